"""A WSGI application that forwards each request to a FastCGI responder.

:class:`FCGIApp` plays the web server's part of FastCGI 1.0.  For every
WSGI request it opens a connection to the backend and sends
FCGI_BEGIN_REQUEST, the CGI variables as FCGI_PARAMS and the request body
as FCGI_STDIN.  The CGI response that comes back on FCGI_STDOUT becomes the
WSGI response, and FCGI_STDERR is copied to ``wsgi.errors``.  One
connection carries one request and is closed afterwards, so the backend
needs neither keep-alive nor multiplexing.

Typical use::

    from flup.client.fcgi_app import FCGIApp
    application = FCGIApp(connect=('127.0.0.1', 9000))

Failures before the response head has arrived become a short error
response: ``502 Bad Gateway`` when the backend cannot be reached or breaks
the protocol, ``503 Service Unavailable`` when it rejects the request, and
``504 Gateway Timeout`` when it stays silent for longer than ``timeout``.
A failure while the body streams is logged and raises :class:`BackendError`,
so the WSGI server closes the client connection instead of passing on a
truncated body as a whole one.
"""

from __future__ import absolute_import

import atexit
import errno
import logging
import os
import select
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import weakref

import six
from six.moves import http_client
from six.moves.urllib.parse import quote

from flup._compat import PY2, from_native, monotonic, to_native
from flup.server._fcgi_protocol import (
    FCGI_ABORT_REQUEST, FCGI_END_REQUEST, FCGI_PARAMS, FCGI_REQUEST_COMPLETE,
    FCGI_RESPONDER, FCGI_STDERR, FCGI_STDIN, FCGI_STDOUT, ProtocolError,
    RecordParser, encode_begin_request, encode_pairs, encode_record,
    encode_stream)

__all__ = ['FCGIApp', 'BackendError']

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0  # seconds; the default of nginx's fastcgi_read_timeout

# One request per connection, so every request has the same id.
_REQUEST_ID = 1

# Bytes of request body read from wsgi.input and sent per FCGI_STDIN record.
_STDIN_CHUNK = 32768

# A CGI response head (Status, headers, blank line) larger than this is
# rejected.  Web servers use similar buffers: nginx's fastcgi_buffer_size
# is 4 or 8 KiB by default, Apache httpd allows 8190 bytes per header line.
MAX_HEAD_BYTES = 64 * 1024

# Seconds a spawned backend gets to exit after SIGTERM before SIGKILL.
BACKEND_STOP_SECONDS = 5.0

# CGI/1.1 variables (RFC 3875, section 4.1) and those that nginx's
# fastcgi_params and Apache httpd's mod_proxy_fcgi add, which PHP and other
# responders read.
_CGI_VARIABLES = frozenset([
    'AUTH_TYPE', 'CONTENT_LENGTH', 'CONTENT_TYPE', 'DOCUMENT_ROOT',
    'DOCUMENT_URI', 'GATEWAY_INTERFACE', 'HTTPS', 'PATH_INFO',
    'PATH_TRANSLATED', 'QUERY_STRING', 'REDIRECT_STATUS', 'REMOTE_ADDR',
    'REMOTE_HOST', 'REMOTE_IDENT', 'REMOTE_PORT', 'REMOTE_USER',
    'REQUEST_METHOD', 'REQUEST_SCHEME', 'REQUEST_URI', 'SCRIPT_FILENAME',
    'SCRIPT_NAME', 'SERVER_ADDR', 'SERVER_NAME', 'SERVER_PORT',
    'SERVER_PROTOCOL', 'SERVER_SOFTWARE',
])
_CGI_PREFIXES = ('HTTP_', 'SERVER_', 'REQUEST_', 'REMOTE_', 'PATH_',
                 'CONTENT_', 'SSL_')

# HTTP/1.1 hop-by-hop headers (RFC 2616, section 13.5.1).  PEP 3333 forbids
# a WSGI application to send them, so they are dropped from the response.
_HOP_BY_HOP = frozenset([
    'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization',
    'te', 'trailers', 'transfer-encoding', 'upgrade',
])

# Characters left as they are when REQUEST_URI is rebuilt from PATH_INFO:
# the unreserved and sub-delimiter characters of RFC 3986 plus ':@/'.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


class BackendError(IOError):
    """The FastCGI backend failed, broke the protocol or timed out.

    ``status`` is the WSGI status sent when the failure happens before the
    response head, for example ``'502 Bad Gateway'``.
    """

    def __init__(self, message, status='502 Bad Gateway'):
        IOError.__init__(self, message)
        self.status = status


class FCGIApp(object):
    """WSGI application that forwards requests to a FastCGI responder.

    Keywords:

    ``connect``
        The backend's address: a ``(host, port)`` tuple for TCP (IPv4 or
        IPv6) or a str naming a Unix socket.
    ``host``, ``port``
        The same as ``connect=(host, port)``.
    ``command``
        Instead of an address, a command line (a str, split as a shell
        would, or a list) that starts the backend.  The backend gets a
        listening Unix socket as file descriptor 0, as spawn-fcgi and
        classic FastCGI spawning pass it.  It is stopped by :meth:`close`,
        when the FCGIApp is garbage collected, or at interpreter exit.
    ``filterEnviron``
        True (the default) sends only CGI variables: those of RFC 3875,
        ``HTTP_*`` request headers except ``HTTP_PROXY``, and the usual
        web server additions such as ``SCRIPT_FILENAME`` and
        ``REQUEST_URI``.  False sends every environ key whose value is a
        native string.
    ``timeout``
        Seconds to wait for the connection and for each read or write on
        it (default 60).

    Exactly one of ``command``, ``connect`` or ``host`` and ``port`` must
    be given.
    """

    def __init__(self, command=None, connect=None, host=None, port=None,
                 filterEnviron=True, timeout=DEFAULT_TIMEOUT):
        if host is not None or port is not None:
            if host is None or port is None:
                raise TypeError('FCGIApp needs both host= and port=, '
                                'got host=%r port=%r' % (host, port))
            if connect is not None:
                raise TypeError('FCGIApp takes connect= or host= and port=, '
                                'not both')
            connect = (host, int(port))
        if (command is None) == (connect is None):
            raise TypeError('FCGIApp needs exactly one of command= and '
                            'connect= (or host= and port=)')
        if connect is not None:
            _check_address(connect)
        self._filter_environ = filterEnviron
        self._timeout = float(timeout)
        self._backend = None
        if command is not None:
            self._backend = _SpawnedBackend(command)
            connect = self._backend.path
        self._connect = connect

    def close(self):
        """Stop the backend started by ``command=``; no-op otherwise."""
        backend = self._backend
        if backend is not None:
            backend.stop()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 (an exception in __del__ is lost)
            pass

    def __call__(self, environ, start_response):
        try:
            exchange = self._start_exchange(environ)
        except BackendError as error:
            return _error_response(start_response, error)
        try:
            status, headers, first_chunks = exchange.read_head()
        except BackendError as error:
            exchange.close()
            return _error_response(start_response, error)
        except BaseException:
            exchange.close()
            raise
        try:
            start_response(status, headers)
        except BaseException:
            exchange.close()
            raise
        return _ResponseBody(exchange, first_chunks)

    def _start_exchange(self, environ):
        body_length = _request_body_length(environ)
        params = self._params(environ, body_length)
        exchange = _Exchange(self._open_socket(), self._timeout,
                             environ.get('wsgi.errors'), self._connect)
        try:
            exchange.send_request(params, environ['wsgi.input'], body_length)
        except BaseException:
            exchange.close()
            raise
        return exchange

    def _open_socket(self):
        address = self._connect
        try:
            if isinstance(address, tuple):
                return socket.create_connection(address[:2], self._timeout)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(self._timeout)
                sock.connect(address)
            except BaseException:
                sock.close()
                raise
            return sock
        except socket.timeout:
            raise BackendError('connecting to the FastCGI backend at %s timed '
                               'out after %.1f s'
                               % (_describe(address), self._timeout),
                               '504 Gateway Timeout')
        except (socket.error, OSError) as error:
            message = ('cannot connect to the FastCGI backend at %s: %s'
                       % (_describe(address), _error_text(error)))
            if self._backend is not None:
                message += '; ' + self._backend.describe_state()
            raise BackendError(message)

    def _params(self, environ, body_length):
        """Return the FCGI_PARAMS pairs (bytes) for ``environ``."""
        if self._filter_environ:
            names = [name for name in environ if _is_cgi_variable(name)]
        else:
            names = list(environ)
        params = {}
        for name in names:
            value = environ[name]
            if _is_string(value) and _is_string(name):
                params[name] = value
        params.pop('CONTENT_LENGTH', None)
        if body_length:
            params['CONTENT_LENGTH'] = str(body_length)
        params.setdefault('GATEWAY_INTERFACE', 'CGI/1.1')
        params.setdefault('REQUEST_URI', _request_uri(environ))
        if environ.get('wsgi.url_scheme') == 'https':
            params.setdefault('HTTPS', 'on')
        pairs = []
        for name, value in params.items():
            try:
                pairs.append((from_native(name), from_native(value)))
            except UnicodeError:
                log.debug('not forwarding %r: its value is not ISO-8859-1 '
                          'text', name)
        return sorted(pairs)


def _check_address(address):
    if isinstance(address, tuple):
        if len(address) < 2:
            raise ValueError('connect address %r must be (host, port)'
                             % (address,))
        return
    if not isinstance(address, six.string_types):
        raise TypeError('connect must be a (host, port) tuple or a Unix '
                        'socket path, not %r' % (address,))


def _is_string(value):
    return isinstance(value, six.string_types)


def _is_cgi_variable(name):
    if not _is_string(name):
        return False
    if name == 'HTTP_PROXY':
        # A client's "Proxy:" header would become HTTP_PROXY, which many
        # CGI programs read as their outgoing proxy ("httpoxy").
        return False
    return name in _CGI_VARIABLES or name.startswith(_CGI_PREFIXES)


def _request_body_length(environ):
    """Return the number of body bytes to forward, from CONTENT_LENGTH.

    An absent or empty CONTENT_LENGTH means no body, as PEP 3333 specifies.
    """
    # NOTE: a body without CONTENT_LENGTH (``wsgi.input_terminated``) is
    # not forwarded, because FCGI_PARAMS must state the length before the
    # first byte of FCGI_STDIN.
    text = (environ.get('CONTENT_LENGTH') or '').strip()
    if not text:
        return 0
    try:
        length = int(text)
    except ValueError:
        length = -1
    if length < 0:
        raise BackendError('invalid CONTENT_LENGTH %r' % text,
                           '400 Bad Request')
    return length


def _request_uri(environ):
    path = environ.get('SCRIPT_NAME', '') + environ.get('PATH_INFO', '')
    if not PY2:
        path = path.encode('latin-1')
    uri = quote(path or '/', safe=_PATH_SAFE)
    query = environ.get('QUERY_STRING')
    if query:
        uri += '?' + query
    return uri


def _describe(address):
    if isinstance(address, tuple):
        host = address[0]
        if ':' in host:
            return '[%s]:%s' % (host, address[1])
        return '%s:%s' % (host, address[1])
    return 'unix:%s' % (address,)


def _error_text(error):
    code = getattr(error, 'errno', None)
    if code in errno.errorcode:
        return '%s (%s)' % (errno.errorcode[code], os.strerror(code))
    return str(error) or type(error).__name__


def _error_response(start_response, error):
    if error.status.startswith('4'):
        log.warning('%s', error)
    else:
        log.error('%s', error)
    body = ('%s\n' % error.status).encode('ascii')
    start_response(error.status, [('Content-Type', 'text/plain'),
                                  ('Content-Length', str(len(body)))])
    return [body]


class _ResponseBody(object):
    """The WSGI response iterable: body chunks as FCGI_STDOUT delivers them.

    ``close()`` closes the backend connection, whether or not the body was
    read to the end.
    """

    def __init__(self, exchange, first_chunks):
        self._exchange = exchange
        self._first_chunks = first_chunks

    def __iter__(self):
        for chunk in self._first_chunks:
            yield chunk
        self._first_chunks = ()
        try:
            for chunk in self._exchange.read_body():
                yield chunk
        except BackendError as error:
            log.error('response body from %s cut short: %s',
                      _describe(self._exchange.address), error)
            raise

    def close(self):
        self._exchange.close()


class _Exchange(object):
    """One request and its response on one backend connection."""

    def __init__(self, sock, timeout, errors, address):
        self.sock = sock
        self.address = address
        self._timeout = timeout
        self._errors = errors
        self._parser = RecordParser()
        self._stdout = []  # FCGI_STDOUT content received and not yet used
        self._ended = False
        self._closed = False
        self._send_error = None  # why sending stopped early, if it did
        sock.settimeout(timeout)

    def close(self):
        if not self._closed:
            self._closed = True
            try:
                self.sock.close()
            except (socket.error, OSError):
                pass

    # Sending.

    def send_request(self, params, input_stream, body_length):
        """Send the request; read what the backend answers meanwhile.

        Reading while sending avoids a deadlock with a backend that writes
        a large response before it has read the whole body.
        """
        head = (encode_begin_request(_REQUEST_ID, FCGI_RESPONDER, 0)
                + encode_stream(FCGI_PARAMS, _REQUEST_ID, encode_pairs(params))
                + encode_record(FCGI_PARAMS, _REQUEST_ID))
        self._send(head)
        remaining = body_length
        while remaining > 0 and self._sending():
            chunk = input_stream.read(min(_STDIN_CHUNK, remaining))
            if not chunk:
                self._abort()
                raise BackendError(
                    'the request body ended after %d of %d bytes'
                    % (body_length - remaining, body_length),
                    '400 Bad Request')
            remaining -= len(chunk)
            self._send(encode_record(FCGI_STDIN, _REQUEST_ID, chunk))
        if self._sending():
            self._send(encode_record(FCGI_STDIN, _REQUEST_ID))

    def _sending(self):
        return not self._ended and self._send_error is None

    def _abort(self):
        if self._sending():
            try:
                self._send(encode_record(FCGI_ABORT_REQUEST, _REQUEST_ID))
            except BackendError:
                pass

    def _send(self, data):
        """Send ``data`` unless the request ended or sending failed.

        A failed send is remembered, not raised: the backend may have
        answered and closed its side before reading the whole body, and
        its response is still worth reading.
        """
        view = memoryview(data)
        while len(view) and self._sending():
            readable, writable = self._wait(want_write=True)
            if readable:
                # The response is kept in memory until the request is sent.
                self._receive()
            if writable and self._sending():
                try:
                    sent = self.sock.send(view[:65536])
                except socket.timeout:
                    continue
                except (socket.error, OSError) as error:
                    if getattr(error, 'errno', None) in (
                            errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                        continue
                    self._send_error = error
                    log.debug('sending to %s failed: %s',
                              _describe(self.address), _error_text(error))
                    return
                view = view[sent:]

    def _wait(self, want_write):
        """Wait up to the timeout; return (readable, writable)."""
        fd = self.sock.fileno()
        deadline = monotonic() + self._timeout
        while True:
            remaining = deadline - monotonic()
            if remaining <= 0:
                raise BackendError(
                    'the FastCGI backend at %s did not respond within %.1f s'
                    % (_describe(self.address), self._timeout),
                    '504 Gateway Timeout')
            try:
                readable, writable = _poll(fd, want_write, remaining)
            except (select.error, OSError, ValueError) as error:
                code = error.args[0] if error.args else None
                if code == errno.EINTR:
                    continue
                raise BackendError('waiting for the FastCGI backend failed: '
                                   '%s' % (error,))
            if readable or writable:
                return readable, writable

    # Receiving.

    def _receive(self):
        """Read once from the socket and handle the complete records."""
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise BackendError(
                'the FastCGI backend at %s did not respond within %.1f s'
                % (_describe(self.address), self._timeout),
                '504 Gateway Timeout')
        except (socket.error, OSError) as error:
            raise BackendError('reading from the FastCGI backend at %s '
                               'failed: %s' % (_describe(self.address),
                                               _error_text(error)))
        if not data:
            message = ('the FastCGI backend at %s closed the connection '
                       'before FCGI_END_REQUEST' % _describe(self.address))
            if self._send_error is not None:
                message += (' (sending the request failed: %s)'
                            % _error_text(self._send_error))
            raise BackendError(message)
        self._parser.feed(data)
        while not self._ended:
            try:
                record = self._parser.next_record()
            except ProtocolError as error:
                raise BackendError('the FastCGI backend at %s broke the '
                                   'protocol: %s'
                                   % (_describe(self.address), error))
            if record is None:
                return
            self._handle_record(record)

    def _handle_record(self, record):
        if record.request_id != _REQUEST_ID:
            if record.request_id == 0:
                log.debug('ignoring management record type %d from %s',
                          record.type, _describe(self.address))
                return
            raise BackendError('the FastCGI backend at %s sent a record for '
                               'request %d, which was never begun'
                               % (_describe(self.address), record.request_id))
        if record.type == FCGI_STDOUT:
            if record.content:
                self._stdout.append(record.content)
        elif record.type == FCGI_STDERR:
            self._copy_stderr(record.content)
        elif record.type == FCGI_END_REQUEST:
            self._end_request(record.content)
        else:
            raise BackendError('the FastCGI backend at %s sent record type %d '
                               'for a request' % (_describe(self.address),
                                                  record.type))

    def _copy_stderr(self, data):
        if not data or self._errors is None:
            return
        text = data if PY2 else data.decode('utf-8', 'replace')
        try:
            self._errors.write(text)
            self._errors.flush()
        except (IOError, OSError, ValueError) as error:
            log.debug('cannot copy FCGI_STDERR to wsgi.errors: %s', error)

    def _end_request(self, content):
        self._ended = True
        if len(content) < 5:
            raise BackendError('FCGI_END_REQUEST from %s has a %d-byte body '
                               '(expected 8)'
                               % (_describe(self.address), len(content)))
        app_status = (six.indexbytes(content, 0) << 24
                      | six.indexbytes(content, 1) << 16
                      | six.indexbytes(content, 2) << 8
                      | six.indexbytes(content, 3))
        protocol_status = six.indexbytes(content, 4)
        if protocol_status != FCGI_REQUEST_COMPLETE:
            raise BackendError('the FastCGI backend at %s rejected the request '
                               '(protocol status %d)'
                               % (_describe(self.address), protocol_status),
                               '503 Service Unavailable')
        if app_status:
            log.debug('FastCGI backend at %s ended the request with '
                      'application status %d', _describe(self.address),
                      app_status)

    def read_head(self):
        """Read until the CGI response head is complete.

        Return ``(status, headers, body_chunks)`` where ``body_chunks`` is
        the start of the body that arrived with the head.
        """
        buffered = b''
        while True:
            if self._stdout:
                buffered += b''.join(self._stdout)
                del self._stdout[:]
                end, separator_length = _find_head_end(buffered)
                if end >= 0:
                    status, headers = parse_cgi_head(buffered[:end])
                    rest = buffered[end + separator_length:]
                    return status, headers, [rest] if rest else []
                if len(buffered) > MAX_HEAD_BYTES:
                    raise BackendError('the response head from %s exceeds %d '
                                       'bytes' % (_describe(self.address),
                                                  MAX_HEAD_BYTES))
            if self._ended:
                raise BackendError('the FastCGI backend at %s ended the request '
                                   'without a complete response head'
                                   % _describe(self.address))
            self._wait(want_write=False)
            self._receive()

    def read_body(self):
        """Yield the rest of the body until FCGI_END_REQUEST."""
        while True:
            if self._stdout:
                chunks = self._stdout[:]
                del self._stdout[:]
                for chunk in chunks:
                    yield chunk
            if self._ended:
                return
            self._wait(want_write=False)
            self._receive()


def _poll(fd, want_write, timeout):
    """Wait up to ``timeout`` seconds; return (readable, writable).

    A hang-up or an error counts as readable, so that the next recv()
    reports it.  poll() is used where it exists because select() fails on
    descriptors above 1023.
    """
    if not hasattr(select, 'poll'):
        readable, writable, _ = select.select(
            [fd], [fd] if want_write else [], [], timeout)
        return bool(readable), bool(writable)
    poller = select.poll()
    read_mask = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR
    poller.register(fd, read_mask | (select.POLLOUT if want_write else 0))
    events = poller.poll(max(1, int(timeout * 1000 + 0.999)))
    mask = 0
    for _, event in events:
        mask |= event
    return bool(mask & read_mask), bool(mask & select.POLLOUT)


def _find_head_end(data):
    """Return (index, separator length) of the blank line, or (-1, 0)."""
    candidates = []
    for separator in (b'\r\n\r\n', b'\n\n'):
        index = data.find(separator)
        if index >= 0:
            candidates.append((index, len(separator)))
    if not candidates:
        return -1, 0
    return min(candidates)


def parse_cgi_head(head):
    """Parse a CGI response head (bytes, no blank line) for WSGI.

    Return ``(status, headers)`` as native strings.  The ``Status`` header
    sets the status; without it a ``Location`` header means ``302 Found``
    and anything else ``200 OK`` (RFC 3875, section 6.3).  Hop-by-hop
    headers are dropped.  A malformed line raises BackendError.
    """
    status = None
    headers = []
    for raw_line in head.split(b'\n'):
        line = to_native(raw_line.rstrip(b'\r'))
        if not line:
            continue
        name, separator, value = line.partition(':')
        name = name.strip()
        if not separator or not name or ' ' in name or '\t' in name:
            raise BackendError('invalid header line in the CGI response: %r'
                               % line[:200])
        value = value.strip()
        if name.lower() == 'status':
            status = _normalize_status(value)
        elif name.lower() in _HOP_BY_HOP:
            log.debug('dropping hop-by-hop header %r from the response', name)
        else:
            headers.append((name, value))
    if status is None:
        has_location = any(name.lower() == 'location' for name, _ in headers)
        status = '302 Found' if has_location else '200 OK'
    return status, headers


def _normalize_status(value):
    code, _, reason = value.partition(' ')
    if len(code) != 3 or not code.isdigit():
        raise BackendError('invalid Status header in the CGI response: %r'
                           % value[:200])
    reason = reason.strip() or http_client.responses.get(int(code), 'Unknown')
    return '%s %s' % (code, reason)


# Spawning a backend.

def _stop_at_exit(reference):
    backend = reference()
    if backend is not None:
        backend.stop()


class _SpawnedBackend(object):
    """A FastCGI backend process serving a Unix socket passed as its fd 0."""

    def __init__(self, command):
        if isinstance(command, six.string_types):
            argv = shlex.split(command)
        else:
            argv = list(command)
        if not argv:
            raise ValueError('command= is empty')
        self.argv = argv
        self._lock = threading.Lock()
        self._directory = tempfile.mkdtemp(prefix='flup-fcgi-')
        self.path = os.path.join(self._directory, 'backend.sock')
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(self.path)
            listener.listen(socket.SOMAXCONN)
            devnull = open(os.devnull, 'wb')
            try:
                # The socket becomes the child's stdin; stdout is unused by
                # FastCGI, stderr stays ours so that its errors are seen.
                self.process = subprocess.Popen(
                    argv, stdin=listener.fileno(), stdout=devnull,
                    close_fds=True)
            finally:
                devnull.close()
        except BaseException:
            shutil.rmtree(self._directory, ignore_errors=True)
            raise
        finally:
            listener.close()
        log.info('started FastCGI backend %r (pid %d) on unix:%s',
                 argv, self.process.pid, self.path)
        atexit.register(_stop_at_exit, weakref.ref(self))

    def describe_state(self):
        process = self.process
        if process is None:
            return 'the backend was stopped'
        code = process.poll()
        if code is None:
            return 'backend pid %d is running' % process.pid
        return 'backend pid %d exited with status %d' % (process.pid, code)

    def stop(self, timeout=BACKEND_STOP_SECONDS):
        """Send SIGTERM, wait up to ``timeout`` seconds, then SIGKILL."""
        with self._lock:
            process = self.process
            if process is None:
                return
            self.process = None
        try:
            if process.poll() is None:
                process.terminate()
                deadline = monotonic() + timeout
                while process.poll() is None and monotonic() < deadline:
                    time.sleep(0.02)
                if process.poll() is None:
                    log.warning('FastCGI backend pid %d did not exit within '
                                '%.1f s of SIGTERM; killing it',
                                process.pid, timeout)
                    process.kill()
                    process.wait()
            log.info('FastCGI backend pid %d stopped (status %s)',
                     process.pid, process.returncode)
        finally:
            shutil.rmtree(self._directory, ignore_errors=True)
