"""Threaded SCGI server for WSGI applications.

Each connection from the web server runs on a thread from a bounded pool.
Typical use::

    from flup.server.scgi import WSGIServer
    WSGIServer(application, bindAddress=('127.0.0.1', 4000)).run()

``run()`` returns True after SIGHUP (reload wanted) and False after SIGINT,
SIGTERM, or when the address cannot be bound.
"""

from __future__ import absolute_import

import logging

from flup.server import NoDefault
from flup.server.fcgi import check_keywords
from flup.server._stats import ServerStats
from flup.server.scgi_base import (
    DEFAULT_GRACE_PERIOD, DEFAULT_READ_TIMEOUT, BaseSCGIServer, Connection)
from flup.server.threadedserver import ThreadedServer

__all__ = ['WSGIServer']

_POOL_KEYWORDS = frozenset(['minSpare', 'maxSpare', 'maxThreads'])


class WSGIServer(BaseSCGIServer, ThreadedServer):
    """Threaded SCGI server.

    Takes the keywords of :class:`~flup.server.scgi_base.BaseSCGIServer`
    (``allowedServers`` defaults to None here: any peer) plus the thread
    pool's ``minSpare``, ``maxSpare`` and ``maxThreads``.
    """

    def __init__(self, application, scriptName=NoDefault, environ=None,
                 multithreaded=True, multiprocess=False,
                 bindAddress=('localhost', 4000), umask=None,
                 allowedServers=None, loggingLevel=logging.INFO, debug=False,
                 readTimeout=DEFAULT_READ_TIMEOUT,
                 gracePeriod=DEFAULT_GRACE_PERIOD, **kw):
        kw.pop('jobClass', None)
        kw.pop('jobArgs', None)
        check_keywords(kw, _POOL_KEYWORDS, 'WSGIServer')
        BaseSCGIServer.__init__(self, application,
                                scriptName=scriptName,
                                environ=environ,
                                multithreaded=multithreaded,
                                multiprocess=multiprocess,
                                bindAddress=bindAddress,
                                umask=umask,
                                allowedServers=allowedServers,
                                loggingLevel=loggingLevel,
                                debug=debug,
                                readTimeout=readTimeout,
                                gracePeriod=gracePeriod)
        ThreadedServer.__init__(self, jobClass=Connection,
                                jobArgs=(self, None), **kw)
        self._stats = ServerStats(self._threadPool)

    def run(self):
        """Serve until SIGINT or SIGTERM (return False) or SIGHUP (True)."""
        return self._serve(lambda sock: ThreadedServer.run(self, sock),
                           'threaded')
