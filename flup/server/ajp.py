"""Threaded AJP 1.3 server for WSGI applications.

Each connection from the web server runs on a thread from a bounded pool
and serves its requests one after another.  Typical use behind Apache
httpd (``ProxyPass "/" "ajp://127.0.0.1:8009/"``)::

    from flup.server.ajp import WSGIServer
    WSGIServer(application, bindAddress=('127.0.0.1', 8009)).run()

``run()`` returns True after SIGHUP (reload wanted) and False after SIGINT,
SIGTERM, or when the address cannot be bound.
"""

from __future__ import absolute_import

import logging

from flup.server._stats import ServerStats
from flup.server.ajp_base import (
    DEFAULT_GRACE_PERIOD, DEFAULT_READ_TIMEOUT, BaseAJPServer, Connection)
from flup.server.fcgi import check_keywords
from flup.server.threadedserver import ThreadedServer

__all__ = ['WSGIServer']

_POOL_KEYWORDS = frozenset(['minSpare', 'maxSpare', 'maxThreads'])


class WSGIServer(BaseAJPServer, ThreadedServer):
    """Threaded AJP 1.3 server.

    Takes the keywords of :class:`~flup.server.ajp_base.BaseAJPServer`
    (``allowedServers`` defaults to None here: any peer) plus the thread
    pool's ``minSpare``, ``maxSpare`` and ``maxThreads``.  Each kept
    connection occupies a pool thread while it waits for its next request.
    """

    def __init__(self, application, scriptName='', environ=None,
                 multithreaded=True, multiprocess=False,
                 bindAddress=('localhost', 8009), allowedServers=None,
                 loggingLevel=logging.INFO, debug=False, umask=None,
                 readTimeout=DEFAULT_READ_TIMEOUT,
                 gracePeriod=DEFAULT_GRACE_PERIOD, **kw):
        kw.pop('jobClass', None)
        kw.pop('jobArgs', None)
        check_keywords(kw, _POOL_KEYWORDS, 'WSGIServer')
        BaseAJPServer.__init__(self, application,
                               scriptName=scriptName,
                               environ=environ,
                               multithreaded=multithreaded,
                               multiprocess=multiprocess,
                               bindAddress=bindAddress,
                               allowedServers=allowedServers,
                               loggingLevel=loggingLevel,
                               debug=debug,
                               umask=umask,
                               readTimeout=readTimeout,
                               gracePeriod=gracePeriod)
        ThreadedServer.__init__(self, jobClass=Connection,
                                jobArgs=(self, None), **kw)
        self._stats = ServerStats(self._threadPool)

    def run(self):
        """Serve until SIGINT or SIGTERM (return False) or SIGHUP (True)."""
        return self._serve(lambda sock: ThreadedServer.run(self, sock),
                           'threaded')
