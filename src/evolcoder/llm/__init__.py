"""LLM access: one small provider interface, a shared completion cache, a concurrent client."""
