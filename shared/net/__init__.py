"""Fetching untrusted URLs safely: the SSRF guard, the HTTP client, URL-list readers."""
