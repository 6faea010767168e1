"""WSGI applications that forward each request to a FastCGI or SCGI backend."""
