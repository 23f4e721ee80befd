"""The hub's durable queue: store (files and fsync), scheduler (attempts and retries)."""
