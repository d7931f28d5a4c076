"""The allocation service."""
