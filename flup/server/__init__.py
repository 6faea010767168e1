"""WSGI servers: FastCGI, SCGI and AJP front modules and their process models."""


class NoDefault(object):
    """Sentinel for a keyword argument that was not given."""


class ClientDisconnected(IOError):
    """The web server hung up or aborted the request.

    Raised by ``wsgi.input`` reads once the request can receive no more
    input, instead of a short read that would look like a whole body.  An
    application may catch it, but anything it writes afterwards is dropped.
    """
