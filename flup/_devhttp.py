"""A development HTTP server that runs a WSGI application in a thread.

``python -m flup --http PORT`` puts it in front of the FastCGI server so
that the demo can be opened in a browser before a web server is installed.
The application it runs is an :class:`~flup.client.fcgi_app.FCGIApp`, so
every request really travels over FastCGI.  It is built on the standard
library's ``wsgiref`` (HTTP/1.0 responses, one connection per request, a
thread per connection) and is not meant for production traffic.

Two HTTP/1.1 request features that ``wsgiref`` lacks are added here: a
``Transfer-Encoding: chunked`` body is decoded and forwarded with a
``CONTENT_LENGTH`` (up to :data:`MAX_CHUNKED_BODY_BYTES`), and
``Expect: 100-continue`` gets the interim ``100 Continue`` response before
the body is read.
"""

from __future__ import absolute_import

import logging
import re
import socket
import tempfile

from six.moves import socketserver
from wsgiref import simple_server

from flup._compat import start_daemon_thread

__all__ = ['DevHTTPServer', 'BodyError', 'decode_chunked', 'MAX_CHUNKED_BODY_BYTES']

log = logging.getLogger(__name__)

# Seconds between checks for shutdown() in serve_forever().
_POLL_INTERVAL = 0.2

# Maximum size of a decoded chunked request body, in bytes.  A larger one
# gets 413.  Bodies with a Content-Length are streamed without this limit.
MAX_CHUNKED_BODY_BYTES = 64 * 1024 * 1024

# Decoded chunked bodies up to this many bytes stay in memory, and larger
# ones go to a temporary file.
_SPOOL_MEMORY_BYTES = 1024 * 1024

# Maximum length of the request line (wsgiref's limit) and of a chunk-size
# or trailer line, in bytes.
_MAX_REQUEST_LINE = 65536
_MAX_CHUNK_LINE = 4096
_MAX_TRAILER_LINES = 100
_READ_SIZE = 65536

_CHUNK_SIZE_RE = re.compile(br'^[0-9A-Fa-f]{1,16}$')


class BodyError(Exception):
    """A request body that cannot be forwarded, with the HTTP status to send."""

    def __init__(self, status, message):
        Exception.__init__(self, message)
        self.status = status
        self.message = message


def _read_line(stream, what):
    line = stream.readline(_MAX_CHUNK_LINE + 1)
    if len(line) > _MAX_CHUNK_LINE:
        raise BodyError(400, 'chunked body: %s line longer than %d bytes'
                        % (what, _MAX_CHUNK_LINE))
    if not line.endswith(b'\n'):
        raise BodyError(400, 'chunked body: connection closed in a %s line'
                        % what)
    return line


def _copy_exactly(stream, output, size):
    remaining = size
    while remaining > 0:
        data = stream.read(min(_READ_SIZE, remaining))
        if not data:
            raise BodyError(400, 'chunked body: connection closed inside a '
                                 'chunk')
        output.write(data)
        remaining -= len(data)


def decode_chunked(stream, output, max_bytes=MAX_CHUNKED_BODY_BYTES):
    """Decode a chunked body (RFC 9112, section 7.1) from ``stream`` into ``output``.

    Return the number of decoded bytes.  Chunk extensions and trailer fields
    are read and dropped.  Raise :class:`BodyError` with 413 when the body
    exceeds ``max_bytes``, and with 400 when the chunked syntax is invalid.
    """
    total = 0
    while True:
        line = _read_line(stream, 'chunk-size')
        size_text = line.split(b';', 1)[0].strip()
        if not _CHUNK_SIZE_RE.match(size_text):
            # The message goes into the status line: printable ASCII only.
            shown = re.sub(br'[^\x21-\x7e]', b'?', size_text[:20])
            raise BodyError(400, 'chunked body: invalid chunk size "%s"'
                            % shown.decode('ascii'))
        size = int(size_text, 16)
        if size == 0:
            break
        if total + size > max_bytes:
            raise BodyError(413, 'chunked body exceeds %d bytes' % max_bytes)
        _copy_exactly(stream, output, size)
        total += size
        if stream.read(2) != b'\r\n':
            raise BodyError(400, 'chunked body: chunk data not followed by '
                                 'CRLF')
    for _ in range(_MAX_TRAILER_LINES):
        if _read_line(stream, 'trailer').strip() == b'':
            return total
    raise BodyError(400, 'chunked body: more than %d trailer lines'
                    % _MAX_TRAILER_LINES)


class _LogStream(object):
    """A text stream that turns what is written into DEBUG log lines.

    wsgiref writes its own tracebacks and the application's ``wsgi.errors``
    output to such a stream; the FastCGI server already logs both sides.
    """

    def __init__(self, logger):
        self._logger = logger
        self._pending = ''

    def write(self, text):
        if isinstance(text, bytes) and not isinstance(text, str):
            text = text.decode('utf-8', 'replace')
        self._pending += text
        while '\n' in self._pending:
            line, self._pending = self._pending.split('\n', 1)
            self._logger.debug('%s', line)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        if self._pending:
            self._logger.debug('%s', self._pending)
            self._pending = ''


class _RequestHandler(simple_server.WSGIRequestHandler):
    # Set by _prepare_body for a decoded chunked body.
    decoded_length = None

    def handle(self):
        """Handle one request as wsgiref does, with chunked and 100-continue support."""
        self.raw_requestline = self.rfile.readline(_MAX_REQUEST_LINE + 1)
        if len(self.raw_requestline) > _MAX_REQUEST_LINE:
            self.requestline = ''
            self.request_version = ''
            self.command = ''
            self.send_error(414)
            return
        if not self.parse_request():
            return  # parse_request has sent the error response
        try:
            body = self._prepare_body()
        except BodyError as error:
            # send_error logs the status and message at DEBUG.
            self.send_error(error.status, error.message)
            return
        handler = simple_server.ServerHandler(
            body, self.wfile, self.get_stderr(), self.get_environ(),
            multithread=False)
        handler.request_handler = self
        try:
            handler.run(self.server.get_app())
        finally:
            if body is not self.rfile:
                body.close()

    def _prepare_body(self):
        """Return the stream of the request body after replying to Expect.

        A chunked body is decoded into a temporary file, so that the
        FastCGI client can send it with a CONTENT_LENGTH.
        """
        expect = (self.headers.get('Expect') or '').strip().lower()
        if expect and expect != '100-continue':
            raise BodyError(417, 'unsupported Expect value %r' % expect)
        transfer_coding = self.headers.get('Transfer-Encoding')
        if transfer_coding is not None:
            if transfer_coding.strip().lower() != 'chunked':
                raise BodyError(501, 'unsupported Transfer-Encoding %r'
                                % transfer_coding)
            if self.headers.get('Content-Length') is not None:
                raise BodyError(400, 'both Content-Length and '
                                     'Transfer-Encoding are set')
        if expect and self.request_version >= 'HTTP/1.1':
            self.wfile.write(b'HTTP/1.1 100 Continue\r\n\r\n')
            self.wfile.flush()
        if transfer_coding is None:
            return self.rfile
        body = tempfile.SpooledTemporaryFile(_SPOOL_MEMORY_BYTES)
        try:
            self.decoded_length = decode_chunked(self.rfile, body,
                                                 MAX_CHUNKED_BODY_BYTES)
        except BaseException:
            body.close()
            raise
        body.seek(0)
        return body

    def log_message(self, format, *args):
        # NOTE: only DEBUG here, because under the prefork model this thread
        # runs in the parent while it forks.  Python 2.7 and 3.6 do not reset
        # logging locks in a forked child (3.7 added that), so a child forked
        # while this thread holds one can hang on its first log line.  The
        # FastCGI side logs each request anyway.
        log.debug('%s %s', self.client_address[0], format % args)

    def get_environ(self):
        environ = simple_server.WSGIRequestHandler.get_environ(self)
        # wsgiref reports text/plain for a request without Content-Type.
        if self.headers.get('Content-Type') is None:
            environ.pop('CONTENT_TYPE', None)
        # The front replies to Expect itself and forwards a chunked body
        # decoded, with its CONTENT_LENGTH, so neither header goes on.
        environ.pop('HTTP_EXPECT', None)
        if self.decoded_length is not None:
            environ.pop('HTTP_TRANSFER_ENCODING', None)
            environ['CONTENT_LENGTH'] = str(self.decoded_length)
        return environ

    def get_stderr(self):
        return _LogStream(log)


class _ThreadingWSGIServer(socketserver.ThreadingMixIn,
                           simple_server.WSGIServer):
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self):
        # HTTPServer.server_bind looks up the host's fully qualified name;
        # the address as given is enough and needs no resolver.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port
        self.setup_environ()


class DevHTTPServer(object):
    """Serve ``application`` over HTTP on ``(host, port)`` in a daemon thread.

    The socket is bound by the constructor, so a port in use raises there.
    ``port=0`` picks a free port; :attr:`port` has the one in use.
    """

    def __init__(self, application, host='127.0.0.1', port=8080):
        server_class = _ThreadingWSGIServer
        if ':' in host:
            server_class = type('_ThreadingWSGIServer6', (_ThreadingWSGIServer,),
                                {'address_family': socket.AF_INET6})
        self._server = server_class((host, port), _RequestHandler)
        self._server.set_app(application)
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = None

    @property
    def url(self):
        host = '[%s]' % self.host if ':' in self.host else self.host
        return 'http://%s:%d/' % (host, self.port)

    @property
    def running(self):
        return self._thread is not None

    def start(self):
        self._thread = start_daemon_thread(
            self._server.serve_forever, 'flup-devhttp', (_POLL_INTERVAL,))

    def stop(self):
        """Stop accepting connections and close the socket.

        Requests still running finish in their daemon threads or end with
        the process.
        """
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5.0)
            self._thread = None
        self._server.server_close()
