"""Outbound notifications (email, web/mobile push, webhooks) live here as they are built."""
