"""SCGI for WSGI applications: the parts every process model shares.

:class:`BaseSCGIServer` stores the configuration.  :class:`Connection`
reads one request from the web server, runs it and closes the connection,
because SCGI has one request per connection.  The front modules combine the base
with a process model: ``scgi`` (threads) and ``scgi_fork`` (processes).

Every wait on the web server is bounded by ``readTimeout``: a connection
that sends no complete header in that time, or stalls that long in the
body, is closed.
"""

from __future__ import absolute_import

import logging
import socket

from flup._compat import monotonic, to_native
from flup.server import ClientDisconnected, NoDefault
from flup.server._gateway import (
    DEFAULT_GRACE_PERIOD, DEFAULT_READ_TIMEOUT, STOP_WAIT_FOR_REQUEST,
    BodyInput, GatewayRequest, GatewayServer, TimeoutException)
from flup.server._netio import (
    close_gracefully, close_quietly, describe_error, describe_peer,
    is_peer_loss, shutdown_quietly, wait_readable)
from flup.server._scgi_protocol import (
    HeaderParser, ProtocolError, merge_headers)
from flup.server._wsgi import format_cgi_headers

__all__ = ['BaseSCGIServer', 'Connection', 'Request', 'ProtocolError',
           'readNetstring', 'recvall', 'TimeoutException',
           'DEFAULT_READ_TIMEOUT', 'DEFAULT_GRACE_PERIOD']

log = logging.getLogger(__name__)

# Maximum bytes requested from the socket per read of the header netstring.
_HEADER_RECV_SIZE = 8192


def recvall(sock, length, timeout=None):
    """Receive ``length`` bytes from ``sock``; return ``(data, count)``.

    ``count`` is less than ``length`` when the peer closed the connection
    first.  ``timeout`` bounds each wait for data, in seconds (None: the
    socket's own timeout); running out raises ``socket.timeout``.
    """
    chunks = []
    received = 0
    while received < length:
        if timeout is not None and not wait_readable([sock.fileno()], timeout):
            raise socket.timeout('no data within %s seconds' % timeout)
        data = sock.recv(min(length - received, 65536))
        if not data:
            break
        chunks.append(data)
        received += len(data)
    return b''.join(chunks), received


def readNetstring(sock, timeout=None):
    """Read one netstring from ``sock`` and return its payload.

    Raises EOFError when the peer closes before the end, ProtocolError for
    a malformed netstring and ``socket.timeout`` when a wait for data takes
    longer than ``timeout`` seconds.
    """
    digits = b''
    while True:
        char, count = recvall(sock, 1, timeout)
        if not count:
            raise EOFError('connection closed inside a netstring length')
        if char == b':':
            break
        if not char.isdigit() or len(digits) >= 10:
            raise ProtocolError('invalid netstring length %r' % (digits + char))
        digits += char
    if not digits:
        raise ProtocolError('empty netstring length')
    size = int(digits)
    payload, count = recvall(sock, size, timeout)
    if count < size:
        raise EOFError('connection closed inside a netstring')
    trailer, count = recvall(sock, 1, timeout)
    if not count:
        raise EOFError('connection closed before the netstring trailer')
    if trailer != b',':
        raise ProtocolError('netstring trailer is %r, not a comma' % trailer)
    return payload


class Request(GatewayRequest):
    """One SCGI request: ``environ``, ``stdin`` (``wsgi.input``) and the
    connection that sends the response."""


class _StopWaiting(Exception):
    """The server asked the connection to end before a request arrived."""


class Connection(object):
    """One connection from the web server, carrying one request.

    ``Connection(sock, addr, server, timeout)``: ``timeout`` is the fork
    server's limit, in seconds, on the application's run time.
    """

    def __init__(self, sock, addr, server, timeout=None):
        self._sock = sock
        self._addr = addr
        self.server = server
        self._timeout = timeout
        self.peer = describe_peer(addr)
        self._lost = False
        self._waiting = True  # no complete header yet
        self._stopping = False
        self._head = None
        self._input = None

    def __repr__(self):
        return '<SCGI Connection from %s>' % self.peer

    # The job protocol of the process models.

    def run(self):
        """Read the request, run it and close the connection."""
        stats = self.server._stats
        stats.connection_opened()
        try:
            self._serve()
        except Exception:
            self.server.logger.exception('unexpected error on the connection '
                                         'from %s', self.peer)
            self._lost = True
        finally:
            if self._lost:
                close_quietly(self._sock)
            else:
                close_gracefully(self._sock)
            stats.connection_closed()

    def stop(self):
        """Let a running request finish; end a connection still waiting."""
        self._stopping = True
        if self._waiting:
            shutdown_quietly(self._sock, socket.SHUT_RD)

    def abort(self):
        """End the connection now."""
        self._lost = True
        shutdown_quietly(self._sock)

    # Reading the request.

    def _serve(self):
        server = self.server
        if not server._isClientAllowed(self._addr):
            server.logger.warning('connection from %s rejected: not in '
                                  'allowedServers', self.peer)
            self._lost = True
            return
        self._sock.settimeout(server.readTimeout)
        try:
            parser = self._read_header()
        except _StopWaiting:
            server.logger.debug('connection from %s closed: the server is '
                                'stopping', self.peer)
            self._lost = True  # nothing to drain: close at once
            return
        except ProtocolError as error:
            server.logger.warning('invalid SCGI request from %s: %s',
                                  self.peer, error)
            self._reject(error.status)
            return
        if parser is None:
            return
        self._waiting = False
        request = self._make_request(parser)
        server._stats.request_started()
        try:
            request.run()
        finally:
            server._stats.request_finished(self._lost)

    def _read_header(self):
        """Return the complete HeaderParser, or None if the peer left."""
        parser = HeaderParser()
        timeout = self.server.readTimeout
        deadline = monotonic() + timeout
        fileno = self._sock.fileno()
        watch_stop = True
        while True:
            remaining = deadline - monotonic()
            if remaining <= 0:
                if not watch_stop and not parser.started:
                    raise _StopWaiting()
                self.server.logger.warning(
                    'no complete SCGI request from %s within readTimeout=%.0f '
                    's; closing the connection', self.peer, timeout)
                self._lost = True
                return None
            wait_fds = [fileno]
            if watch_stop:
                wait_fds.extend(getattr(self.server, 'wakeup_fds', ()))
            ready = wait_readable(wait_fds, remaining)
            if watch_stop and self._stop_seen(ready, fileno):
                watch_stop = False
                deadline = min(deadline, monotonic() + STOP_WAIT_FOR_REQUEST)
                continue
            if fileno not in ready:
                continue
            data = self._recv(_HEADER_RECV_SIZE)
            if not data:
                if parser.started:
                    self.server.logger.warning(
                        '%s closed the connection inside the SCGI header',
                        self.peer)
                else:
                    self.server.logger.debug('%s closed the connection '
                                             'without a request', self.peer)
                self._lost = True
                return None
            if parser.feed(data):
                return parser

    def _stop_seen(self, ready, fileno):
        """Return True once the server asked this connection to end."""
        if self._stopping:
            return True
        woken = ready and fileno not in ready
        return bool(woken and getattr(self.server, 'stop_requested', False))

    def _recv(self, size):
        """Receive bytes; return b'' when the peer is gone."""
        try:
            return self._sock.recv(size)
        except (socket.error, OSError) as error:
            self._connection_lost(error)
            return b''

    def _make_request(self, parser):
        params = dict((to_native(name), to_native(value)) for name, value
                      in merge_headers(parser.headers).items())
        params['CONTENT_LENGTH'] = str(parser.content_length)
        self._input = BodyInput(self._fetch_body, parser.content_length,
                                parser.rest)
        environ = self.server.build_request_environ(
            params, self._input, {'flup.disconnected': self.is_disconnected})
        return self.server.requestClass(self, environ, self._input,
                                        self._timeout)

    def _fetch_body(self, size):
        if self._lost:
            raise ClientDisconnected('the web server closed the connection')
        try:
            data = self._sock.recv(size)
        except socket.timeout:
            self.server.logger.warning(
                'no request body bytes from %s within readTimeout=%.0f s; '
                'closing the connection', self.peer, self.server.readTimeout)
            self._lost = True
            raise ClientDisconnected('reading the request body timed out')
        except (socket.error, OSError) as error:
            self._connection_lost(error)
            raise ClientDisconnected('reading the request body failed: %s'
                                     % describe_error(error))
        if not data:
            self._lost = True
            self.server.logger.debug('%s closed the connection inside the '
                                     'request body', self.peer)
        return data

    # Writing the response.

    def send_headers(self, status, headers):
        self._head = format_cgi_headers(status, headers)

    def send_body(self, data, final):
        if self._head is not None:
            data = self._head + data
            self._head = None
        self._send(data)

    def fail_response(self):
        """End a response that cannot be completed: reset the connection."""
        self._lost = True
        shutdown_quietly(self._sock)

    def _send(self, data):
        if self._lost or not data:
            return
        try:
            self._sock.sendall(data)
        except (socket.error, OSError) as error:
            self._connection_lost(error)

    def _reject(self, status):
        body = ('%s\n' % status).encode('ascii')
        self._send(format_cgi_headers(status, [
            ('Content-Type', 'text/plain'),
            ('Content-Length', str(len(body)))]) + body)

    def _connection_lost(self, error):
        if not self._lost:
            self._lost = True
            if is_peer_loss(error):
                self.server.logger.debug('connection from %s lost: %s',
                                         self.peer, describe_error(error))
            else:
                self.server.logger.info('connection from %s failed: %s',
                                        self.peer, describe_error(error))

    def is_disconnected(self):
        """Return True once the web server has closed the connection.

        After the body the web server sends nothing more, so a readable
        socket then means end of file or a reset.
        """
        if self._lost:
            return True
        if self._input is None or not self._input.complete:
            return False
        try:
            if not wait_readable([self._sock.fileno()], 0):
                return False
            data = self._sock.recv(1, socket.MSG_PEEK)
        except (socket.error, OSError) as error:
            self._connection_lost(error)
            return True
        if not data:
            self._lost = True
            self.server.logger.debug('%s closed the connection while the '
                                     'application ran', self.peer)
        return self._lost


class BaseSCGIServer(GatewayServer):
    """SCGI configuration and the WSGI handler; no process model.

    Keywords:

    ``application``
        The WSGI application.
    ``scriptName``
        Where the application is mounted.  By default (NoDefault) the
        SCRIPT_NAME the web server sends is used, and a missing PATH_INFO
        is derived from REQUEST_URI.  A str sets SCRIPT_NAME, and
        PATH_INFO becomes the rest of the request path.  None passes both
        on as the web server sent them.  A ``WSGI_SCRIPT_NAME`` request
        variable overrides it per request.
    ``environ``
        A dict of extra keys copied into every WSGI environ.
    ``multithreaded``, ``multiprocess``
        The ``wsgi.multithread`` and ``wsgi.multiprocess`` values.
    ``bindAddress``
        A ``(host, port)`` tuple for TCP (a longer tuple or an IPv6 host
        for IPv6) or a str for a Unix socket path (an existing socket file
        there is replaced).  Default ``('localhost', 4000)``.
    ``umask``
        The umask in force while the Unix socket file is created.
    ``allowedServers``
        IP addresses of web servers that may connect; None allows any.
        Connections over a Unix socket are always served.  Here the
        default is ``['127.0.0.1']``; the front modules default to None.
    ``loggingLevel``
        Level set on the ``flup.server.scgi_base`` logger (default INFO).
        None leaves the level alone.  No handler is attached.
    ``debug``
        Show the traceback in the 500 page (default: a generic page).
    ``readTimeout``
        Seconds the web server may take to send the request header, and
        may stay silent in the request body, before the connection is
        closed.  Default 60.
    ``gracePeriod``
        Seconds to wait for running requests on shutdown.  Default 5.
    """

    protocol_name = 'SCGI'
    logger = log
    requestClass = Request

    def __init__(self, application, scriptName=NoDefault, environ=None,
                 multithreaded=True, multiprocess=False,
                 bindAddress=('localhost', 4000), umask=None,
                 allowedServers=NoDefault, loggingLevel=logging.INFO,
                 debug=False, readTimeout=DEFAULT_READ_TIMEOUT,
                 gracePeriod=DEFAULT_GRACE_PERIOD):
        if allowedServers is NoDefault:
            allowedServers = ['127.0.0.1']
        self._init_gateway(application, scriptName, environ, multithreaded,
                           multiprocess, bindAddress, umask, allowedServers,
                           loggingLevel, debug, readTimeout, gracePeriod)
