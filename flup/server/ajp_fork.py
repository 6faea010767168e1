"""Prefork AJP 1.3 server for WSGI applications.

Each connection is served by one of a set of child processes, one request
at a time, so the application needs no thread safety.  A child stays with
its connection while the web server keeps it, so ``maxChildren`` should
exceed the number of connections the web server pools.
"""

from __future__ import absolute_import

import logging

from flup.server.ajp_base import (
    DEFAULT_GRACE_PERIOD, DEFAULT_READ_TIMEOUT, BaseAJPServer, Connection)
from flup.server.fcgi import check_keywords
from flup.server.preforkserver import PreforkServer

__all__ = ['WSGIServer']

_PREFORK_KEYWORDS = frozenset(
    ['minSpare', 'maxSpare', 'maxChildren', 'maxRequests', 'sockTimeout'])


class WSGIServer(BaseAJPServer, PreforkServer):
    """Prefork AJP 1.3 server.

    Takes the keywords of :class:`~flup.server.ajp_base.BaseAJPServer`
    (``allowedServers`` defaults to None here: any peer), ``timeout``
    (seconds an application may run before SIGALRM ends the request; None
    for no limit) and the process pool's ``minSpare``, ``maxSpare``,
    ``maxChildren``, ``maxRequests`` and ``sockTimeout`` (see
    :class:`~flup.server.preforkserver.PreforkServer`).
    """

    def __init__(self, application, scriptName='', environ=None,
                 bindAddress=('localhost', 8009), allowedServers=None,
                 loggingLevel=logging.INFO, debug=False, timeout=None,
                 umask=None, readTimeout=DEFAULT_READ_TIMEOUT,
                 gracePeriod=DEFAULT_GRACE_PERIOD, **kw):
        kw.pop('jobClass', None)
        kw.pop('jobArgs', None)
        check_keywords(kw, _PREFORK_KEYWORDS, 'WSGIServer')
        BaseAJPServer.__init__(self, application,
                               scriptName=scriptName,
                               environ=environ,
                               multithreaded=False,
                               multiprocess=True,
                               bindAddress=bindAddress,
                               allowedServers=allowedServers,
                               loggingLevel=loggingLevel,
                               debug=debug,
                               umask=umask,
                               readTimeout=readTimeout,
                               gracePeriod=gracePeriod)
        PreforkServer.__init__(self, jobClass=Connection,
                               jobArgs=(self, timeout), **kw)
        self.gracePeriod = gracePeriod

    def run(self):
        """Serve until SIGINT or SIGTERM (return False) or SIGHUP (True)."""
        return self._serve(lambda sock: PreforkServer.run(self, sock),
                           'prefork')
