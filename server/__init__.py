"""Wire servers (AWS endpoint, STOMP): not built yet."""
