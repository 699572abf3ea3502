"""`mullama-tui serve`: SSE, WebSocket and OpenAI-compatible streaming on the engine."""
