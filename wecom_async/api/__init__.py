"""Endpoint namespaces: each builds requests and decodes answers, never touches transport."""
