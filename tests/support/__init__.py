"""Helpers that start flup servers, web servers and clients for the tests."""
