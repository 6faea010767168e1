"""FastCGI for WSGI applications: the parts every process model shares.

:class:`BaseFCGIServer` contains the application and the configuration and
runs a request through WSGI (:meth:`~BaseFCGIServer.handler`).  The front
modules combine it with a process model: ``fcgi`` (threads), ``fcgi_fork``
(processes) and ``fcgi_single`` (one connection at a time).

Environment variables read:

``FCGI_WEB_SERVER_ADDRS``
    Comma-separated IP addresses; TCP connections from other addresses are
    closed.  Connections over Unix sockets are always accepted.
``FCGI_FORCE_CGI``
    ``Y`` runs the application once as plain CGI.
``FLUP_MULTIPLEXED``
    ``1``/``0``, ``true``/``false``, ``yes``/``no`` or ``on``/``off`` (any
    case): overrides the ``multiplexed`` argument.
"""

from __future__ import absolute_import

import logging
import os
import sys

from flup._compat import PY2, monotonic
from flup.server import ClientDisconnected
from flup.server._fcgi_connection import (
    Connection, MultiplexedConnection, Record, Request, TimeoutException)
from flup.server._fcgi_protocol import (  # noqa: F401 (re-exported names)
    FCGI_ABORT_REQUEST, FCGI_AUTHORIZER, FCGI_BEGIN_REQUEST,
    FCGI_CANT_MPX_CONN, FCGI_DATA, FCGI_END_REQUEST, FCGI_FILTER,
    FCGI_GET_VALUES, FCGI_GET_VALUES_RESULT, FCGI_HEADER_LEN, FCGI_KEEP_CONN,
    FCGI_LISTENSOCK_FILENO, FCGI_MAX_CONNS, FCGI_MAX_REQS, FCGI_MAXTYPE,
    FCGI_MPXS_CONNS, FCGI_NULL_REQUEST_ID, FCGI_OVERLOADED, FCGI_PARAMS,
    FCGI_REQUEST_COMPLETE, FCGI_RESPONDER, FCGI_STDERR, FCGI_STDIN,
    FCGI_STDOUT, FCGI_UNKNOWN_ROLE, FCGI_UNKNOWN_TYPE, FCGI_VERSION_1,
    ProtocolError, decode_pair, encode_pair)
from flup.server._fcgi_streams import (
    ErrorStream, InputStream, MultiplexedInputStream, OutputStream,
    StdoutWrapper, TeeOutputStream)
from flup.server._netio import (
    bind_listening_socket, close_quietly, listening_socket_from_fd,
    parse_address_list, remove_socket_file, socket_file_identity)
from flup.server._stats import ServerStats
from flup.server._wsgi import (
    LineReader, Response, build_environ, content_length, error_page,
    format_cgi_headers, run_application)

__all__ = [
    'BaseFCGIServer', 'Connection', 'MultiplexedConnection', 'Request',
    'CGIRequest', 'Record', 'InputStream', 'MultiplexedInputStream',
    'OutputStream', 'TeeOutputStream', 'StdoutWrapper', 'encode_pair',
    'decode_pair', 'TimeoutException', 'ClientDisconnected', 'ProtocolError',
    'parse_multiplexed_env',
    'FCGI_LISTENSOCK_FILENO', 'FCGI_HEADER_LEN', 'FCGI_VERSION_1',
    'FCGI_BEGIN_REQUEST', 'FCGI_ABORT_REQUEST', 'FCGI_END_REQUEST',
    'FCGI_PARAMS', 'FCGI_STDIN', 'FCGI_STDOUT', 'FCGI_STDERR', 'FCGI_DATA',
    'FCGI_GET_VALUES', 'FCGI_GET_VALUES_RESULT', 'FCGI_UNKNOWN_TYPE',
    'FCGI_MAXTYPE', 'FCGI_NULL_REQUEST_ID', 'FCGI_KEEP_CONN',
    'FCGI_RESPONDER', 'FCGI_AUTHORIZER', 'FCGI_FILTER',
    'FCGI_REQUEST_COMPLETE', 'FCGI_CANT_MPX_CONN', 'FCGI_OVERLOADED',
    'FCGI_UNKNOWN_ROLE', 'FCGI_MAX_CONNS', 'FCGI_MAX_REQS', 'FCGI_MPXS_CONNS',
]

log = logging.getLogger(__name__)

DEFAULT_READ_TIMEOUT = 60.0  # seconds; nginx's fastcgi_*_timeout default
DEFAULT_GRACE_PERIOD = 5.0  # seconds

_TRUE_WORDS = ('1', 'true', 'yes', 'on')
_FALSE_WORDS = ('0', 'false', 'no', 'off')


def parse_multiplexed_env(argument, environ=None):
    """Return ``(multiplexed, source)`` with ``FLUP_MULTIPLEXED`` applied.

    ``source`` is ``'FLUP_MULTIPLEXED'`` when the variable decided and
    ``'argument'`` otherwise.  An invalid value raises ValueError.
    """
    environ = os.environ if environ is None else environ
    value = environ.get('FLUP_MULTIPLEXED')
    if value is None or value.strip() == '':
        return bool(argument), 'argument'
    word = value.strip().lower()
    if word in _TRUE_WORDS:
        return True, 'FLUP_MULTIPLEXED'
    if word in _FALSE_WORDS:
        return False, 'FLUP_MULTIPLEXED'
    raise ValueError(
        'invalid FLUP_MULTIPLEXED value %r: use one of %s'
        % (value, ', '.join(_TRUE_WORDS + _FALSE_WORDS)))


def _force_cgi_requested(environ):
    return environ.get('FCGI_FORCE_CGI', '').strip().lower() in (
        'y', 'yes', '1', 'true', 'on')


class BaseFCGIServer(object):
    """FastCGI configuration and the WSGI handler; no process model.

    Keywords:

    ``application``
        The WSGI application.
    ``environ``
        A dict of extra keys copied into every WSGI environ.
    ``multithreaded``, ``multiprocess``
        The ``wsgi.multithread`` and ``wsgi.multiprocess`` values.
    ``bindAddress``
        None: the web server passed a listening socket as descriptor 0 (if
        descriptor 0 is not a socket, the application runs once as CGI).  A
        str: a Unix socket path (an existing socket file there is
        replaced).  A 2-tuple: a TCP ``(host, port)``; a longer tuple or an
        IPv6 host: TCP over IPv6.
    ``umask``
        The umask in force while the Unix socket file is created.
    ``multiplexed``
        Serve several requests at once on one connection, each in its own
        thread.  ``FLUP_MULTIPLEXED`` in the environment overrides it.
    ``debug``
        Show the traceback in the 500 page (default: a generic page).
    ``roles``
        The FastCGI roles served; others get FCGI_UNKNOWN_ROLE.
    ``forceCGI``
        Run the application once as plain CGI.
    ``readTimeout``
        Seconds a connection may stay silent in the middle of a record or a
        request's input before it is closed and its requests aborted.  An
        idle kept-alive connection between requests has no limit.
    ``gracePeriod``
        Seconds to wait for request threads when their connection ends, and
        for connections when the server shuts down, before discarding them.

    Hooks for subclasses: ``request_class``, ``cgirequest_class``,
    ``maxwrite`` (content bytes per STDOUT record, at most 65535),
    ``inputStreamShrinkThreshold``, :meth:`handler`, :meth:`error` and the
    ``capability`` dict answered to FCGI_GET_VALUES.
    """

    request_class = Request
    cgirequest_class = None  # set below, once CGIRequest exists
    maxwrite = 8192
    inputStreamShrinkThreshold = 102400 - 8192

    def __init__(self, application, environ=None,
                 multithreaded=True, multiprocess=False,
                 bindAddress=None, umask=None, multiplexed=False,
                 debug=False, roles=(FCGI_RESPONDER,), forceCGI=False,
                 readTimeout=DEFAULT_READ_TIMEOUT,
                 gracePeriod=DEFAULT_GRACE_PERIOD):
        if environ is None:
            environ = {}
        self.application = application
        self.environ = environ
        self.multithreaded = multithreaded
        self.multiprocess = multiprocess
        self.debug = debug
        self.roles = tuple(roles)
        self.forceCGI = forceCGI
        self.readTimeout = _positive_seconds('readTimeout', readTimeout)
        self.gracePeriod = _positive_seconds('gracePeriod', gracePeriod)
        self._bindAddress = bindAddress
        self._umask = umask
        self.multiplexed, self._multiplexed_source = parse_multiplexed_env(
            multiplexed)
        self._connectionClass = (
            MultiplexedConnection if self.multiplexed else Connection)
        addrs = os.environ.get('FCGI_WEB_SERVER_ADDRS', '').strip()
        self._web_server_addrs = parse_address_list(addrs) if addrs else None
        self._stats = ServerStats()
        self._bound_path = None
        self.capability = {
            FCGI_MAX_CONNS: 1,
            FCGI_MAX_REQS: 1,
            FCGI_MPXS_CONNS: 0,
        }

    def _set_capability(self, max_conns, max_reqs):
        self.capability = {
            FCGI_MAX_CONNS: max(1, int(max_conns)),
            FCGI_MAX_REQS: max(1, int(max_reqs)),
            FCGI_MPXS_CONNS: 1 if self.multiplexed else 0,
        }

    def _disable_multiplexing(self, model):
        """Turn multiplexing off for a process model that cannot do it."""
        if self.multiplexed:
            log.info('multiplexed=True is ignored by the %s server, which '
                     'serves one request per connection at a time (it was '
                     'set by %s)', model, self._multiplexed_source)
            self._multiplexed_source = 'the %s process model' % model
        self.multiplexed = False
        self._connectionClass = Connection

    def stats(self):
        """Return live counts: see :class:`flup.server._stats.ServerStats`."""
        return self._stats.snapshot()

    def _log_start(self, model, pool_text):
        log.info('serving FastCGI on %s: %s model, %s, multiplexing %s '
                 '(set by %s)', self._describe_address(), model, pool_text,
                 'on' if self.multiplexed else 'off', self._multiplexed_source)

    def _describe_address(self):
        address = self._bindAddress
        if address is None:
            return 'the socket on descriptor 0'
        if isinstance(address, tuple):
            host = address[0]
            if ':' in host:
                return '[%s]:%s' % (host, address[1])
            return '%s:%s' % (host, address[1])
        return 'unix:%s' % (address,)

    # Sockets and the CGI fallback.

    def _want_cgi(self):
        return self.forceCGI or _force_cgi_requested(os.environ)

    def _setupSocket(self):
        """Return the listening socket, or None to run as CGI."""
        if self._bindAddress is None:
            return listening_socket_from_fd(FCGI_LISTENSOCK_FILENO)
        sock = bind_listening_socket(self._bindAddress, self._umask)
        if not isinstance(self._bindAddress, tuple):
            self._bound_path = socket_file_identity(self._bindAddress)
        return sock

    def _cleanupSocket(self, sock):
        close_quietly(sock)
        if self._bound_path is not None:
            remove_socket_file(self._bound_path)
            self._bound_path = None

    def _serve(self, model_run, model, pool_text):
        """Run as CGI or serve on the listening socket with ``model_run``."""
        if self._want_cgi():
            self._run_as_cgi()
            return False
        sock = self._setupSocket()
        if sock is None:
            self._run_as_cgi()
            return False
        self._log_start(model, pool_text)
        try:
            return model_run(sock)
        finally:
            self._cleanupSocket(sock)
            log.info('FastCGI server on %s stopped', self._describe_address())

    def _run_as_cgi(self):
        log.debug('running the application once as CGI')
        self.cgirequest_class(self).run()

    # WSGI.

    def handler(self, req):
        """Run the WSGI application for ``req``.

        Return ``(protocolStatus, appStatus)``.  Exceptions from the
        application propagate; the request then logs them and calls
        :meth:`error`.
        """
        started = monotonic()
        is_cgi = isinstance(req, CGIRequest)
        extra = {
            'flup.disconnected': req.is_disconnected,
            'flup.stats': self.stats,
        }
        if req.role == FCGI_FILTER:
            extra['flup.data'] = req.data
        environ = build_environ(
            req.params, self.environ, req.stdin, ErrorStream(req.stderr),
            multithread=False if is_cgi else self.multithreaded,
            multiprocess=True if is_cgi else self.multiprocess,
            extra=extra)
        if is_cgi:
            environ['wsgi.run_once'] = True
        head = []

        def send_headers(status, headers):
            head.append(format_cgi_headers(status, headers))

        def send_body(data, final):
            if head:
                data = head.pop() + data
            if final:
                req.stdout.write_final(data)
            else:
                req.stdout.write(data)

        response = Response(send_headers, send_body, lambda: req.aborted)
        # The request writes the access line once it has ended, after any
        # error page.
        req.access_record = (environ, response, started)
        run_application(self.application, environ, response)
        return FCGI_REQUEST_COMPLETE, 0

    def error(self, req):
        """Write the 500 response for an application error to ``req.stdout``."""
        status, headers, body = error_page(self.debug, sys.exc_info())
        req.stdout.write(format_cgi_headers(status, headers) + body)
        record = getattr(req, 'access_record', None)
        if record is not None:
            record[1].status = status
            record[1].bytes_sent = len(body)


def _positive_seconds(name, value):
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise TypeError('%s must be a number of seconds, not %r' % (name, value))
    if seconds <= 0:
        raise ValueError('%s must be positive, not %r' % (name, value))
    return seconds


class _CGIInput(LineReader):
    """Binary stdin limited to CONTENT_LENGTH, as ``wsgi.input`` for CGI."""

    def __init__(self, stream, length):
        self._stream = stream
        self._remaining = length or 0

    def read(self, size=-1):
        if size is None or size < 0 or size > self._remaining:
            size = self._remaining
        if size <= 0:
            return b''
        data = self._stream.read(size)
        self._remaining -= len(data)
        return data

    def readline(self, size=-1):
        if size is None or size < 0 or size > self._remaining:
            size = self._remaining
        if size <= 0:
            return b''
        line = self._stream.readline(size)
        self._remaining -= len(line)
        return line

    def abort(self, reason):
        pass

    def add_data(self, data):
        pass


class _CGIOutput(StdoutWrapper):
    """Binary stdout for CGI, with the stream interface handler() uses."""

    def write(self, data):
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError('CGI output must be bytes, not %s'
                            % type(data).__name__)
        StdoutWrapper.write(self, bytes(data))

    write_final = write

    def close(self):
        self._stream.flush()


def _binary_stream(stream):
    return getattr(stream, 'buffer', stream)


def _cgi_params(environ):
    """Convert os.environ to native strings as PEP 3333 wants them."""
    if PY2:
        return dict(environ)
    encoding = sys.getfilesystemencoding()
    params = {}
    for name, value in environ.items():
        params[name] = value.encode(encoding, 'surrogateescape').decode(
            'latin-1')
    return params


class CGIRequest(Request):
    """A request read from the CGI environment, stdin and stdout."""

    def __init__(self, server):
        self.server = server
        self.params = _cgi_params(os.environ)
        length = content_length(self.params)
        self.stdin = _CGIInput(_binary_stream(sys.stdin), length)
        self.data = _CGIInput(_binary_stream(sys.stdin), 0)
        self.stdout = _CGIOutput(_binary_stream(sys.stdout))
        self.stderr = _CGIOutput(_binary_stream(sys.stderr))
        self.requestId = 1
        self.role = FCGI_RESPONDER
        self.flags = 0
        self.aborted = False
        self.abort_reason = None
        self.ended = False
        self.access_record = None
        self._timeout = None

    @property
    def peer(self):
        return 'CGI'

    def is_disconnected(self):
        return False

    def _flush(self):
        self.stdout.flush()
        self.stderr.flush()

    def _end(self, appStatus=0, protocolStatus=FCGI_REQUEST_COMPLETE):
        pass


BaseFCGIServer.cgirequest_class = CGIRequest
