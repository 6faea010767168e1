"""What the SCGI and AJP servers share: configuration, sockets and requests.

SCGI and AJP differ from FastCGI in the same ways: they bind their own
socket (with a default address), filter peers with ``allowedServers``,
keep upstream's ``scriptName`` and ``loggingLevel`` keywords and serve one
request at a time per connection.  :class:`GatewayServer` stores that
configuration, :class:`GatewayRequest` runs one request through the WSGI
gateway of :mod:`flup.server._wsgi`, and :class:`BodyInput` is the
``wsgi.input`` of both protocols.
"""

from __future__ import absolute_import

import logging
import signal
import socket
import sys

from flup._compat import current_thread_is_main, monotonic
from flup.server import ClientDisconnected, NoDefault
from flup.server._netio import (
    bind_listening_socket, close_quietly, describe_error, normalize_ip,
    peer_ip, remove_socket_file, socket_file_identity)
from flup.server._stats import ServerStats
from flup.server._wsgi import (
    LineReader, Response, build_environ, derive_path_info, error_page,
    log_access, run_application)

# Seconds a web server may stay silent while the server waits for a
# request's header or body before the connection is closed.  60 s is
# nginx's default scgi_read_timeout and Apache httpd's default Timeout.
DEFAULT_READ_TIMEOUT = 60.0
# Seconds the server waits for running requests when it shuts down.
DEFAULT_GRACE_PERIOD = 5.0
# Seconds a connection accepted before a stop request still waits for its
# first request.  A prefork child may accept a connection just as its parent
# asks it to quit.  The web server sends the request right after connecting,
# so it normally arrives within milliseconds, and serving it avoids a
# failed request.
STOP_WAIT_FOR_REQUEST = 1.0

# Maximum bytes requested from the socket per read of a request body.
RECV_SIZE = 65536


class TimeoutException(Exception):
    """The application ran longer than the fork server's ``timeout``."""


def _positive_seconds(name, value):
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise TypeError('%s must be a number of seconds, not %r' % (name, value))
    if seconds <= 0:
        raise ValueError('%s must be positive, not %r' % (name, value))
    return seconds


def parse_allowed_servers(allowed):
    """Convert ``allowedServers`` to a frozenset of IP texts, or None for all.

    A str is read as one address, so that ``allowedServers='127.0.0.1'``
    does not become a set of characters.
    """
    if allowed is None:
        return None
    if isinstance(allowed, (str, bytes)) or not hasattr(allowed, '__iter__'):
        allowed = [allowed]
    addresses = set()
    for item in allowed:
        if isinstance(item, bytes) and not isinstance(item, str):
            item = item.decode('ascii')
        if not isinstance(item, str) and type(item).__name__ != 'unicode':
            raise TypeError('allowedServers must contain IP address strings, '
                            'not %r' % (item,))
        addresses.add(normalize_ip(str(item)))
    return frozenset(addresses)


def describe_address(address):
    """Return a bind address as text for log lines."""
    if isinstance(address, tuple) and len(address) >= 2:
        host = address[0] or '*'
        if ':' in host:
            return '[%s]:%s' % (host, address[1])
        return '%s:%s' % (host, address[1])
    return 'unix:%s' % (address,)


def apply_script_name(environ, script_name):
    """Set SCRIPT_NAME and PATH_INFO in ``environ`` for ``scriptName``.

    NoDefault keeps what the web server sent and derives a missing
    PATH_INFO from REQUEST_URI.  None leaves both untouched.  A str mounts
    the application there: the request path (SCRIPT_NAME plus PATH_INFO
    as the web server sent them) loses that prefix to become PATH_INFO,
    and keeps it whole when it does not start with the prefix.
    """
    if script_name is None:
        return
    if script_name is NoDefault:
        environ.setdefault('SCRIPT_NAME', '')
        if not environ.get('PATH_INFO') and environ.get('REQUEST_URI'):
            environ['PATH_INFO'] = derive_path_info(
                environ['SCRIPT_NAME'], environ['REQUEST_URI'])
        return
    script_name = script_name.rstrip('/')
    if 'PATH_INFO' in environ or 'REQUEST_URI' not in environ:
        path = environ.get('SCRIPT_NAME', '') + environ.get('PATH_INFO', '')
    else:
        path = derive_path_info('', environ['REQUEST_URI'])
    environ['SCRIPT_NAME'] = script_name
    environ['PATH_INFO'] = derive_path_info(script_name, path)


class GatewayServer(object):
    """Configuration and request handling shared by the SCGI and AJP servers.

    Subclasses set ``protocol_name`` and ``logger`` and pass their
    connection class to a process model.
    """

    protocol_name = 'gateway'
    logger = logging.getLogger('flup.server')

    def _init_gateway(self, application, scriptName, environ, multithreaded,
                      multiprocess, bindAddress, umask, allowedServers,
                      loggingLevel, debug, readTimeout, gracePeriod):
        self.application = application
        self.scriptName = scriptName
        self.environ = {} if environ is None else environ
        self.multithreaded = multithreaded
        self.multiprocess = multiprocess
        self.debug = debug
        self.readTimeout = _positive_seconds('readTimeout', readTimeout)
        self.gracePeriod = _positive_seconds('gracePeriod', gracePeriod)
        self._bindAddress = bindAddress
        self._umask = umask
        self._allowedServers = parse_allowed_servers(allowedServers)
        self._bound_path = None
        self._stats = ServerStats()
        if loggingLevel is not None:
            # Upstream flup attached a stderr handler here as well; this
            # project leaves handlers to the application.
            self.logger.setLevel(loggingLevel)

    def stats(self):
        """Return live counts: see :class:`flup.server._stats.ServerStats`."""
        return self._stats.snapshot()

    def _isClientAllowed(self, addr):
        """Return whether a connection from ``addr`` may be served.

        ``allowedServers`` applies to TCP peers; a peer on a Unix socket
        passed the file permissions and is always served.
        """
        ip = peer_ip(addr)
        if self._allowedServers is None or ip is None:
            return True
        return ip in self._allowedServers

    # Sockets.

    def _setupSocket(self):
        """Bind the listening socket; log and return None when that fails."""
        try:
            sock = bind_listening_socket(self._bindAddress, self._umask)
        except (socket.error, OSError) as error:
            self.logger.error('cannot listen on %s: %s',
                              describe_address(self._bindAddress),
                              describe_error(error))
            return None
        if not isinstance(self._bindAddress, tuple):
            self._bound_path = socket_file_identity(self._bindAddress)
        return sock

    def _cleanupSocket(self, sock):
        close_quietly(sock)
        if self._bound_path is not None:
            remove_socket_file(self._bound_path)
            self._bound_path = None

    def _serve(self, model_run, model):
        """Bind, run ``model_run(sock)`` and clean up; return its result.

        Return False at once when the address cannot be bound.
        """
        sock = self._setupSocket()
        if sock is None:
            return False
        where = describe_address(self._bindAddress)
        self.logger.info('serving %s on %s: %s model', self.protocol_name,
                         where, model)
        try:
            return model_run(sock)
        finally:
            self._cleanupSocket(sock)
            self.logger.info('%s server on %s stopped', self.protocol_name,
                             where)

    # Requests.

    def build_request_environ(self, params, stdin, extra=None):
        """Return the WSGI environ for request variables ``params``."""
        params = dict(params)
        script_name = params.pop('WSGI_SCRIPT_NAME', self.scriptName)
        if script_name is not NoDefault and script_name is not None:
            if script_name.lower() == 'none':
                script_name = None
        apply_script_name(params, script_name)
        extra = dict(extra or ())
        extra['flup.stats'] = self.stats
        return build_environ(params, self.environ, stdin, sys.stderr,
                             multithread=self.multithreaded,
                             multiprocess=self.multiprocess, extra=extra)

    def handler(self, request):
        """Run the WSGI application for ``request`` and send its response.

        Exceptions from the application propagate to ``request.run()``.
        """
        started = monotonic()
        environ = request.environ
        response = Response(request.send_headers, request.send_body,
                            request.is_disconnected)
        request.response = response
        try:
            run_application(self.application, environ, response)
        finally:
            log_access(environ, response, started)

    def error(self, request):
        """Send the 500 response for an application error."""
        status, headers, body = error_page(self.debug, sys.exc_info())
        request.send_headers(status, headers)
        request.send_body(body, True)


# Returned by GatewayRequest._start_alarm when no alarm was armed.
_NO_ALARM = object()


class GatewayRequest(object):
    """One request on an SCGI or AJP connection.

    ``environ`` is the WSGI environ, ``stdin`` its ``wsgi.input``.  The
    connection supplies ``send_headers(status, headers)``,
    ``send_body(data, final)`` and ``is_disconnected()``.  ``timeout``
    (the fork servers' keyword) limits the application's run time in
    seconds through SIGALRM, which works in the main thread only.
    """

    def __init__(self, conn, environ, stdin, timeout=None):
        self._conn = conn
        self.server = conn.server
        self.environ = environ
        self.stdin = stdin
        self.response = None
        self._timeout = timeout

    @property
    def headers_sent(self):
        return self.response is not None and self.response.headers_sent

    def send_headers(self, status, headers):
        self._conn.send_headers(status, headers)

    def send_body(self, data, final):
        self._conn.send_body(data, final)

    def is_disconnected(self):
        return self._conn.is_disconnected()

    def run(self):
        """Run the server's handler; log an application error and send 500."""
        old_alarm = self._start_alarm()
        try:
            self.server.handler(self)
        except Exception as error:
            # The alarm must not fire while the error page is sent.
            self._stop_alarm(old_alarm)
            old_alarm = _NO_ALARM
            self._handle_exception(error)
        finally:
            self._stop_alarm(old_alarm)

    def _handle_exception(self, error):
        conn = self._conn
        if conn.is_disconnected():
            self.server.logger.debug('request from %s ended by %s after the '
                                     'web server left', conn.peer,
                                     type(error).__name__)
            return
        self.server.logger.error('application error in the request from %s',
                                 conn.peer, exc_info=True)
        if self.headers_sent:
            # The status line is gone; ending the connection early is the
            # only sign of the failure the web server can get.
            conn.fail_response()
            return
        self.server.error(self)

    def timeout_handler(self, signum, frame):
        raise TimeoutException('the application ran longer than %s seconds'
                               % self._timeout)

    def _start_alarm(self):
        """Arm SIGALRM for ``timeout``; return the handler it replaced."""
        if not self._timeout or not current_thread_is_main():
            return _NO_ALARM
        old = signal.signal(signal.SIGALRM, self.timeout_handler)
        signal.alarm(max(1, int(self._timeout)))
        return old

    def _stop_alarm(self, old):
        if old is _NO_ALARM:
            return
        signal.alarm(0)
        # signal.signal() returns None for a handler not set from Python.
        signal.signal(signal.SIGALRM, old if old is not None else signal.SIG_DFL)


class BodyInput(LineReader):
    """``wsgi.input`` for a request body fetched piece by piece.

    ``fetch(size)`` returns the next bytes of the body (at most ``size``),
    or raises ClientDisconnected.  ``length`` is the body size from
    CONTENT_LENGTH, or None when the protocol marks the end itself; then
    ``fetch`` returns ``b''`` at the end.  Reads never ask for bytes past
    ``length``, so a web server that keeps its connection open after the
    body does not make them wait.
    """

    def __init__(self, fetch, length, initial=b''):
        self._fetch = fetch
        self._remaining = length  # bytes not yet fetched, or None
        self._buffer = b''
        self._eof = length == 0 and not initial
        self.bytes_read = 0
        if initial:
            self._take(initial)

    @property
    def complete(self):
        """True once the whole body has been fetched."""
        return self._eof or self._remaining == 0

    def _take(self, data):
        if self._remaining is not None:
            data = data[:self._remaining]
            self._remaining -= len(data)
        self._buffer += data

    def _fill(self, wanted):
        """Fetch until ``wanted`` bytes are buffered or the body ends."""
        while len(self._buffer) < wanted and not self.complete:
            size = RECV_SIZE
            if self._remaining is not None:
                size = min(size, self._remaining)
            data = self._fetch(size)
            if not data:
                if self._remaining:
                    raise ClientDisconnected(
                        'the web server ended the request body %d bytes early'
                        % self._remaining)
                self._eof = True
                return
            self._take(data)

    def _pop(self, size):
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        self.bytes_read += len(data)
        return data

    def read(self, size=-1):
        if size is None or size < 0:
            while not self.complete:
                self._fill(len(self._buffer) + RECV_SIZE)
            return self._pop(len(self._buffer))
        if size == 0:
            return b''
        self._fill(size)
        return self._pop(size)

    def readline(self, size=-1):
        limit = size if size is not None and size >= 0 else None
        start = 0
        while True:
            index = self._buffer.find(b'\n', start)
            if index >= 0:
                end = index + 1
                break
            if limit is not None and len(self._buffer) >= limit:
                end = limit
                break
            if self.complete:
                end = len(self._buffer)
                break
            start = len(self._buffer)
            self._fill(len(self._buffer) + 1)
        if limit is not None:
            end = min(end, limit)
        return self._pop(end)
