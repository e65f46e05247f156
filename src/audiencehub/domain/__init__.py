"""Plain types and pure rules. Imports nothing of ours but errors."""
