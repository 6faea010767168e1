"""A WSGI application that forwards each request to an SCGI server.

Typical use, forwarding to a backend on a Unix socket::

    from flup.client.scgi_app import SCGIApp
    application = SCGIApp(connect='/run/app.sock')

Each request opens one connection, sends the request variables and the
body, and streams the backend's CGI response back to the WSGI server.
"""

from __future__ import absolute_import

import logging
import socket

from six.moves import http_client

from flup._compat import from_native, is_native, monotonic, to_native
from flup.server._scgi_protocol import (
    ProtocolError, encode_request_head, parse_response_head)

__all__ = ['SCGIApp']

log = logging.getLogger(__name__)

# Request variables forwarded when ``filterEnviron`` is True: CGI/1.1
# variables and HTTP request headers.
_FORWARDED_PREFIXES = ('SERVER_', 'HTTP_', 'REQUEST_', 'REMOTE_', 'PATH_',
                       'CONTENT_')
_FORWARDED_NAMES = ('SCRIPT_NAME', 'QUERY_STRING', 'AUTH_TYPE')

DEFAULT_TIMEOUT = 60.0  # seconds; nginx's default scgi_read_timeout
_CHUNK_SIZE = 65536
# Maximum size of the backend's response head, in bytes.
MAX_RESPONSE_HEAD = 1 << 20


class SCGIApp(object):
    """Forward WSGI requests to the SCGI server at ``connect``.

    ``connect`` is a Unix socket path or a ``(host, port)`` tuple;
    ``host`` and ``port`` are the older way to give the tuple.  With
    ``filterEnviron`` (the default) only CGI variables and HTTP headers are
    forwarded; without it, every upper-case environ key with a string
    value.  ``timeout`` bounds connecting and each wait for the backend,
    in seconds.  A backend that cannot be reached gives a 502 response.
    """

    def __init__(self, connect=None, host=None, port=None,
                 filterEnviron=True, timeout=DEFAULT_TIMEOUT):
        if host is not None:
            if connect is not None:
                raise ValueError('give either connect or host and port')
            connect = (host, port)
        if connect is None:
            raise ValueError('SCGIApp needs connect= (a Unix socket path or '
                             'a (host, port) tuple)')
        self._connect = connect
        self._filterEnviron = filterEnviron
        self._timeout = timeout

    def __call__(self, environ, start_response):
        try:
            sock = self._getConnection()
        except (socket.error, OSError) as error:
            log.error('cannot connect to the SCGI server at %r: %s',
                      self._connect, error)
            return _gateway_error(start_response, 'the SCGI backend cannot be '
                                  'reached')
        try:
            self._send_request(sock, environ)
            status, headers, body = self._read_head(sock)
        except (socket.error, OSError, ProtocolError) as error:
            sock.close()
            log.error('SCGI request to %r failed: %s', self._connect, error)
            return _gateway_error(start_response, 'the SCGI backend failed')
        except BaseException:
            sock.close()
            raise
        start_response(status, headers)
        return _ResponseBody(sock, body)

    def _getConnection(self):
        """Return a new socket connected to the backend."""
        if isinstance(self._connect, tuple):
            return socket.create_connection(self._connect, self._timeout)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self._timeout)
        try:
            sock.connect(self._connect)
        except BaseException:
            sock.close()
            raise
        return sock

    def _send_request(self, sock, environ):
        length = _content_length(environ)
        if self._filterEnviron:
            variables = self._defaultFilterEnviron(environ)
        else:
            variables = self._lightFilterEnviron(environ)
        variables.pop('CONTENT_LENGTH', None)
        variables.pop('SCGI', None)
        pairs = [(from_native(name), from_native(value))
                 for name, value in sorted(variables.items())]
        sock.sendall(encode_request_head(pairs, length))
        stream = environ['wsgi.input']
        remaining = length
        while remaining > 0:
            chunk = stream.read(min(remaining, _CHUNK_SIZE))
            if not chunk:
                raise ProtocolError('the client sent %d bytes less than its '
                                    'CONTENT_LENGTH' % remaining)
            sock.sendall(chunk)
            remaining -= len(chunk)

    def _read_head(self, sock):
        data = b''
        deadline = monotonic() + self._timeout
        while True:
            parsed = parse_response_head(data)
            if parsed is not None:
                break
            if len(data) > MAX_RESPONSE_HEAD:
                raise ProtocolError('response head longer than %d bytes'
                                    % MAX_RESPONSE_HEAD)
            if monotonic() > deadline:
                raise socket.timeout('no complete response head within %s s'
                                     % self._timeout)
            chunk = sock.recv(_CHUNK_SIZE)
            if not chunk:
                raise ProtocolError('the backend closed the connection before '
                                    'the end of the response head')
            data += chunk
        status, headers, body = parsed
        return (_status_line(to_native(status)),
                [(to_native(name), to_native(value)) for name, value in headers],
                body)

    def _defaultFilterEnviron(self, environ):
        result = {}
        for name, value in environ.items():
            if not is_native(value):
                continue
            if name.startswith(_FORWARDED_PREFIXES) or name in _FORWARDED_NAMES:
                result[name] = value
        return result

    def _lightFilterEnviron(self, environ):
        return dict((name, value) for name, value in environ.items()
                    if name.upper() == name and is_native(value))


class _ResponseBody(object):
    """The backend's response body as a WSGI iterable that closes the
    socket."""

    def __init__(self, sock, first):
        self._sock = sock
        self._first = first

    def __iter__(self):
        if self._first:
            first, self._first = self._first, b''
            yield first
        while self._sock is not None:
            chunk = self._sock.recv(_CHUNK_SIZE)
            if not chunk:
                return
            yield chunk

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _content_length(environ):
    try:
        return max(0, int(environ.get('CONTENT_LENGTH') or 0))
    except ValueError:
        return 0


def _status_line(status):
    """Return a WSGI status line; add the reason a bare code lacks."""
    code, _, reason = status.strip().partition(' ')
    if not code.isdigit() or len(code) != 3:
        raise ProtocolError('invalid Status header %r' % status)
    if not reason.strip():
        reason = http_client.responses.get(int(code), 'Unknown')
    return '%s %s' % (code, reason.strip())


def _gateway_error(start_response, message):
    body = ('502 Bad Gateway: %s\n' % message).encode('ascii')
    start_response('502 Bad Gateway', [('Content-Type', 'text/plain'),
                                       ('Content-Length', str(len(body)))])
    return [body]
