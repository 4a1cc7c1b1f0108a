"""App bridges: turn a protocol driver's Exchange into WSGI environ or ASGI scope calls."""
