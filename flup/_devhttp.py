"""A development HTTP server that runs a WSGI application in a thread.

``python -m flup --http PORT`` puts it in front of the FastCGI server so
that the demo can be opened in a browser before a web server is installed.
The application it runs is an :class:`~flup.client.fcgi_app.FCGIApp`, so
every request really travels over FastCGI.  It is built on the standard
library's ``wsgiref`` (HTTP/1.0, one connection per request, a thread per
connection) and is not meant for production traffic.
"""

from __future__ import absolute_import

import logging
import socket

from six.moves import socketserver
from wsgiref import simple_server

from flup._compat import start_daemon_thread

__all__ = ['DevHTTPServer']

log = logging.getLogger(__name__)

# Seconds between checks for shutdown() in serve_forever().
_POLL_INTERVAL = 0.2


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
