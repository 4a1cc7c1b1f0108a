"""Protocol drivers: move bytes between a transport and a sans-IO parser (h11, wsproto)."""
