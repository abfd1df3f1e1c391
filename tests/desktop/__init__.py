"""The Agent desktop, its WebSocket, the caller form, in pages, sockets and a real browser."""
