"""WSGI servers: FastCGI, SCGI and AJP front modules and their process models."""


class NoDefault(object):
    """Sentinel for a keyword argument that was not given."""
