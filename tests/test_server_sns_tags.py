"""SNS topic tags through boto3: kept in the topic's configuration, listed, kept on restart."""

from __future__ import annotations

from pathlib import Path

import pytest
from server_harness import client, running


def test_topic_tags(tmp_path: Path) -> None:
    with running(tmp_path / "data") as server:
        sns = client("sns", server.url)
        arn = sns.create_topic(Name="t", Tags=[{"Key": "team", "Value": "core"}])["TopicArn"]
        sns.tag_resource(ResourceArn=arn, Tags=[{"Key": "env", "Value": "dev"}])
        assert sns.list_tags_for_resource(ResourceArn=arn)["Tags"] == [
            {"Key": "env", "Value": "dev"},
            {"Key": "team", "Value": "core"},
        ]
        sns.untag_resource(ResourceArn=arn, TagKeys=["team"])
        with pytest.raises(sns.exceptions.TagLimitExceededException):
            sns.tag_resource(
                ResourceArn=arn, Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(60)]
            )
        with pytest.raises(sns.exceptions.ResourceNotFoundException):
            sns.list_tags_for_resource(ResourceArn=arn + "-missing")
        # Create-if-absent still agrees with the topic after it gained tags.
        assert sns.create_topic(Name="t")["TopicArn"] == arn
    with running(tmp_path / "data") as server:
        sns = client("sns", server.url)
        assert sns.list_tags_for_resource(ResourceArn=arn)["Tags"] == [
            {"Key": "env", "Value": "dev"}
        ]
