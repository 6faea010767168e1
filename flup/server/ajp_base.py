"""AJP 1.3 for WSGI applications: the parts every process model shares.

:class:`BaseAJPServer` stores the configuration, and :class:`Connection` serves
the requests a web server (Apache httpd's mod_proxy_ajp, lighttpd's
mod_ajp13) sends on one connection, one after another.  The front modules
combine the base with a process model: ``ajp`` (threads) and ``ajp_fork``
(processes).

Every wait on the web server is bounded by ``readTimeout``, including the
wait for the next request on a kept connection.  Web servers reconnect
when they find a pooled connection closed.
"""

from __future__ import absolute_import

import logging
import socket

from flup._compat import from_native, monotonic, to_native
from flup.server import ClientDisconnected, NoDefault
from flup.server._ajp_protocol import (
    CPING, FORWARD_REQUEST, PING, SHUTDOWN, PacketParser, ProtocolError,
    decode_body_chunk, decode_forward_request, encode_body_chunks,
    encode_cpong, encode_end_response, encode_get_body_chunk, encode_packet,
    encode_send_headers, message_type)
from flup.server._gateway import (
    DEFAULT_GRACE_PERIOD, DEFAULT_READ_TIMEOUT, STOP_WAIT_FOR_REQUEST,
    BodyInput, GatewayRequest, GatewayServer, TimeoutException)
from flup.server._netio import (
    close_gracefully, close_quietly, describe_error, describe_peer,
    is_peer_loss, shutdown_quietly, wait_readable)
from flup.server._wsgi import content_length

__all__ = ['BaseAJPServer', 'Connection', 'Request', 'Packet', 'InputStream',
           'ProtocolError', 'TimeoutException', 'DEFAULT_READ_TIMEOUT',
           'DEFAULT_GRACE_PERIOD']

log = logging.getLogger(__name__)

_RECV_SIZE = 65536

# Request attributes copied into the environ under CGI names.  The
# ``secret`` attribute is deliberately absent: it must not reach the
# application or its logs.
_ATTRIBUTE_VARIABLES = {
    'remote_user': 'REMOTE_USER',
    'auth_type': 'AUTH_TYPE',
    'ssl_cert': 'SSL_CLIENT_CERT',
    'ssl_cipher': 'SSL_CIPHER',
    'ssl_session': 'SSL_SESSION_ID',
    'ssl_key_size': 'SSL_CIPHER_USEKEYSIZE',
}
# req_attribute names that mod_proxy_ajp sends for CGI variables.
_REQUEST_ATTRIBUTE_VARIABLES = {
    'AJP_REMOTE_PORT': 'REMOTE_PORT',
    'AJP_LOCAL_ADDR': 'SERVER_ADDR',
}


def forward_request_params(request):
    """Return the CGI variables of a decoded FORWARD_REQUEST as native
    strings (without SCRIPT_NAME and PATH_INFO)."""
    attributes = request.attributes
    query = to_native(attributes.get('query_string', b''))
    uri = to_native(request.request_uri)
    params = {
        'REQUEST_METHOD': request.method,
        'SERVER_PROTOCOL': to_native(request.protocol),
        'REQUEST_URI': uri + ('?' + query if query else ''),
        'QUERY_STRING': query,
        'REMOTE_ADDR': to_native(request.remote_addr),
        'SERVER_NAME': to_native(request.server_name),
        'SERVER_PORT': str(request.server_port),
    }
    if request.remote_host:
        params['REMOTE_HOST'] = to_native(request.remote_host)
    if request.is_ssl:
        params['HTTPS'] = 'on'
    for name, value in request.headers:
        key = to_native(name).upper().replace('-', '_')
        if key not in ('CONTENT_TYPE', 'CONTENT_LENGTH'):
            key = 'HTTP_' + key
        value = to_native(value)
        if key in params:
            separator = '; ' if key == 'HTTP_COOKIE' else ', '
            value = params[key] + separator + value
        params[key] = value
    for name, key in _ATTRIBUTE_VARIABLES.items():
        if name in attributes:
            value = attributes[name]
            params[key] = str(value) if isinstance(value, int) else to_native(value)
    for name, value in request.request_attributes:
        name = to_native(name)
        key = _REQUEST_ATTRIBUTE_VARIABLES.get(name, name)
        params.setdefault(key, to_native(value))
    return params


class Packet(object):
    """One AJP packet, for code that reads or writes packets itself.

    ``read(sock)`` receives a packet from the web server into ``data``.  It
    raises EOFError at end of file and ProtocolError for a wrong magic.
    ``write(sock)`` sends ``data`` as a container packet.
    """

    def __init__(self):
        self.data = b''
        self.length = 0

    def read(self, sock):
        parser = PacketParser()
        while True:
            payload = parser.next_payload()
            if payload is not None:
                self.data = payload
                self.length = len(payload)
                return
            chunk = sock.recv(_RECV_SIZE if parser.partial else 4)
            if not chunk:
                raise EOFError('connection closed in the middle of a packet')
            parser.feed(chunk)

    def write(self, sock):
        self.length = len(self.data)
        sock.sendall(encode_packet(self.data))


class InputStream(BodyInput):
    """The request body as ``wsgi.input``: fetched from the web server with
    GET_BODY_CHUNK as the application reads it."""


class Request(GatewayRequest):
    """One AJP request: ``environ``, ``stdin`` (``wsgi.input``) and the
    connection that sends the response."""


class _ConnectionEnded(Exception):
    """No more requests on this connection: the peer left or the server
    is stopping."""


class Connection(object):
    """A connection from the web server, serving requests one at a time.

    ``Connection(sock, addr, server, timeout)``: ``timeout`` is the fork
    server's limit, in seconds, on the application's run time.
    """

    def __init__(self, sock, addr, server, timeout=None):
        self._sock = sock
        self._addr = addr
        self.server = server
        self._timeout = timeout
        self.peer = describe_peer(addr)
        self._parser = PacketParser()
        self._lost = False
        self._idle = True
        self._stopping = False
        self._failed = False
        self._unsolicited_chunk = False
        self._input = None
        self._head = b''
        self._served = 0

    def __repr__(self):
        return '<AJP Connection from %s>' % self.peer

    # The job protocol of the process models.

    def run(self):
        """Serve requests until the connection ends, then close it."""
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
        """Let a running request finish, then end; end an idle connection."""
        self._stopping = True
        if self._idle:
            shutdown_quietly(self._sock, socket.SHUT_RD)

    def abort(self):
        """End the connection now."""
        self._lost = True
        shutdown_quietly(self._sock)

    # Reading.

    def _serve(self):
        server = self.server
        if not server._isClientAllowed(self._addr):
            server.logger.warning('connection from %s rejected: not in '
                                  'allowedServers', self.peer)
            self._lost = True
            return
        self._sock.settimeout(server.readTimeout)
        if self._sock.family != socket.AF_UNIX:
            # Responses are written in several packets; without this the
            # next one can wait for the peer's delayed ACK.
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while not self._stopping:
                payload = self._read_payload(idle=True)
                if not self._handle_message(payload):
                    return
        except _ConnectionEnded:
            return
        except ProtocolError as error:
            server.logger.warning('invalid AJP data from %s: %s; closing the '
                                  'connection', self.peer, error)
            self._lost = True

    def _handle_message(self, payload):
        """Act on one message; return False when the connection should end."""
        if not payload:
            # An end-of-body packet for a request without a body, which
            # lighttpd's mod_ajp13 sends; there is nothing to do.
            return True
        kind = message_type(payload)
        if kind == FORWARD_REQUEST:
            return self._handle_request(payload)
        if kind == CPING:
            self._send(encode_cpong())
            return not self._lost
        if kind == PING:
            return True
        if kind == SHUTDOWN:
            # A web server may not stop the application; end the connection.
            self.server.logger.info('%s sent an AJP SHUTDOWN message; closing '
                                    'the connection', self.peer)
            return False
        raise ProtocolError('unexpected message type %d' % kind)

    def _read_payload(self, idle=False):
        """Return the next packet payload; raise _ConnectionEnded when the
        web server is gone, silent for ``readTimeout`` or the server stops."""
        timeout = self.server.readTimeout
        deadline = monotonic() + timeout
        fileno = self._sock.fileno()
        watch_stop = idle
        while True:
            payload = self._parser.next_payload()
            if payload is not None:
                return payload
            waiting = idle and not self._parser.partial
            remaining = deadline - monotonic()
            if remaining <= 0:
                if idle and not watch_stop and waiting:
                    self._lost = True  # stopped, and no request came
                    raise _ConnectionEnded()
                self._timed_out(waiting, timeout)
            wait_fds = [fileno]
            if watch_stop and waiting:
                wait_fds.extend(getattr(self.server, 'wakeup_fds', ()))
            ready = wait_readable(wait_fds, remaining)
            if watch_stop and waiting and self._stop_seen(ready, fileno):
                if self._served or self._stopping:
                    self._lost = True  # idle: nothing to drain
                    raise _ConnectionEnded()
                # A fresh connection: its first request may be in flight.
                watch_stop = False
                deadline = min(deadline, monotonic() + STOP_WAIT_FOR_REQUEST)
                continue
            if fileno not in ready:
                continue
            try:
                data = self._sock.recv(_RECV_SIZE)
            except (socket.error, OSError) as error:
                self._connection_lost(error)
                raise _ConnectionEnded()
            if not data:
                self._lost = True
                level = logging.DEBUG if waiting else logging.WARNING
                self.server.logger.log(level, '%s closed the connection%s',
                                       self.peer, '' if waiting else
                                       ' in the middle of a packet')
                raise _ConnectionEnded()
            self._parser.feed(data)

    def _stop_seen(self, ready, fileno):
        """Return True once the server asked this connection to end."""
        if self._stopping:
            return True
        woken = ready and fileno not in ready
        return bool(woken and getattr(self.server, 'stop_requested', False))

    def _timed_out(self, waiting, timeout):
        if waiting:
            self.server.logger.debug('no request from %s for readTimeout=%.0f '
                                     's; closing the idle connection',
                                     self.peer, timeout)
        else:
            self.server.logger.warning('no data from %s within readTimeout='
                                       '%.0f s; closing the connection',
                                       self.peer, timeout)
            self._lost = True
        raise _ConnectionEnded()

    # Requests.

    def _handle_request(self, payload):
        server = self.server
        try:
            forward = decode_forward_request(payload)
        except ProtocolError as error:
            server.logger.warning('invalid AJP request from %s: %s',
                                  self.peer, error)
            self._reject(error.status)
            return False
        self._idle = False
        self._failed = False
        params = forward_request_params(forward)
        length = content_length(params)
        chunked = 'chunked' in params.get('HTTP_TRANSFER_ENCODING', '').lower()
        if chunked:
            length = None
        elif length is None:
            length = 0
        # mod_proxy_ajp sends the first body packet unrequested, right after
        # the request, unless the body is chunked.  The container requests
        # the rest with GET_BODY_CHUNK.
        self._unsolicited_chunk = not chunked and length > 0
        self._input = InputStream(self._fetch_body, length)
        environ = server.build_request_environ(
            params, self._input, {'flup.disconnected': self.is_disconnected})
        request = server.requestClass(self, environ, self._input,
                                      self._timeout)
        server._stats.request_started()
        try:
            request.run()
        finally:
            server._stats.request_finished(self._lost)
        return self._end_response()

    def _end_response(self):
        """Send what is left and END_RESPONSE; return whether to go on."""
        if self._lost:
            return False
        # A connection can carry the next request only once this request's
        # body was read to its end.
        reuse = (self._input.complete and not self._unsolicited_chunk
                 and not self._failed and not self._stopping)
        self._send(self._head + encode_end_response(reuse))
        self._head = b''
        self._idle = True
        self._served += 1
        return reuse and not self._lost and not self._stopping

    def _fetch_body(self, size):
        if self._lost:
            raise ClientDisconnected('the web server closed the connection')
        if self._unsolicited_chunk:
            self._unsolicited_chunk = False
        else:
            self._send(encode_get_body_chunk(size))
        try:
            payload = self._read_payload()
            data = decode_body_chunk(payload)
        except _ConnectionEnded:
            raise ClientDisconnected('the web server closed the connection '
                                     'inside the request body')
        except ProtocolError as error:
            self.server.logger.warning('invalid AJP body packet from %s: %s',
                                       self.peer, error)
            self._lost = True
            raise ClientDisconnected('invalid request body packet')
        return data

    def _reject(self, status):
        code, _, reason = status.partition(' ')
        body = ('%s\n' % status).encode('ascii')
        self._send(encode_send_headers(int(code), reason.encode('ascii'), [
            (b'Content-Type', b'text/plain'),
            (b'Content-Length', str(len(body)).encode('ascii'))])
            + encode_body_chunks(body) + encode_end_response(False))

    # Writing.

    def send_headers(self, status, headers):
        code, _, reason = status.partition(' ')
        self._head = encode_send_headers(
            int(code), from_native(reason),
            [(from_native(name), from_native(value)) for name, value in headers])

    def send_body(self, data, final):
        packets = self._head + encode_body_chunks(data)
        if final:
            # Sent with END_RESPONSE in one write, which saves a round of
            # delayed ACKs on a kept connection.
            self._head = packets
            return
        self._head = b''
        self._send(packets)

    def fail_response(self):
        """End a response that cannot be completed: reset the connection, so
        the web server does not take the truncated response as whole."""
        self._failed = True
        self._lost = True
        shutdown_quietly(self._sock)

    def _send(self, data):
        if self._lost or not data:
            return
        try:
            self._sock.sendall(data)
        except (socket.error, OSError) as error:
            self._connection_lost(error)

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

        While no body bytes are due, the web server sends nothing, so a
        readable socket then means end of file or a reset.
        """
        if self._lost:
            return True
        if self._input is None or not self._input.complete:
            return False
        if self._unsolicited_chunk or self._parser.partial:
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


class BaseAJPServer(GatewayServer):
    """AJP 1.3 configuration and the WSGI handler; no process model.

    Keywords:

    ``application``
        The WSGI application.
    ``scriptName``
        Where the application is mounted (default ``''``, the root).  AJP
        sends only the request URI, so SCRIPT_NAME is this value and
        PATH_INFO the rest of the path.  A path outside it is passed whole
        as PATH_INFO.
    ``environ``
        A dict of extra keys copied into every WSGI environ.
    ``multithreaded``, ``multiprocess``
        The ``wsgi.multithread`` and ``wsgi.multiprocess`` values.
    ``bindAddress``
        A ``(host, port)`` tuple (a longer tuple or an IPv6 host for IPv6)
        or a str for a Unix socket path.  Default ``('localhost', 8009)``.
    ``umask``
        The umask in force while a Unix socket file is created.
    ``allowedServers``
        IP addresses of web servers that may connect; None allows any.
        Here the default is ``['127.0.0.1']``; the front modules default to
        None.
    ``loggingLevel``
        Level set on the ``flup.server.ajp_base`` logger (default INFO).
        None leaves the level alone.  No handler is attached.
    ``debug``
        Show the traceback in the 500 page (default: a generic page).
    ``readTimeout``
        Seconds the web server may stay silent inside a request, or
        between requests on a kept connection, before the connection is
        closed.  Default 60.
    ``gracePeriod``
        Seconds to wait for running requests on shutdown.  Default 5.

    NOTE: mod_proxy_ajp's ``secret`` is neither required nor checked, so
    restrict who can connect with ``allowedServers`` or a Unix socket.
    """

    protocol_name = 'AJP'
    logger = log
    requestClass = Request
    # Kept for subclasses written against upstream; reads are bounded by
    # the request body size here, so it has no effect.
    inputStreamShrinkThreshold = 102400 - 8192

    def __init__(self, application, scriptName='', environ=None,
                 multithreaded=True, multiprocess=False,
                 bindAddress=('localhost', 8009), allowedServers=NoDefault,
                 loggingLevel=logging.INFO, debug=False, umask=None,
                 readTimeout=DEFAULT_READ_TIMEOUT,
                 gracePeriod=DEFAULT_GRACE_PERIOD):
        if allowedServers is NoDefault:
            allowedServers = ['127.0.0.1']
        self._init_gateway(application, scriptName, environ, multithreaded,
                           multiprocess, bindAddress, umask, allowedServers,
                           loggingLevel, debug, readTimeout, gracePeriod)
