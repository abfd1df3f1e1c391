"""Sessions: the routing flow through the Media Blender, and what failures do to sessions."""
