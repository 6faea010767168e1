"""Prefork SCGI server for WSGI applications.

Each connection is served by one of a set of child processes, one request
at a time, so the application needs no thread safety.
"""

from __future__ import absolute_import

import logging

from flup.server import NoDefault
from flup.server.fcgi import check_keywords
from flup.server.preforkserver import PreforkServer
from flup.server.scgi_base import (
    DEFAULT_GRACE_PERIOD, DEFAULT_READ_TIMEOUT, BaseSCGIServer, Connection)

__all__ = ['WSGIServer']

_PREFORK_KEYWORDS = frozenset(
    ['minSpare', 'maxSpare', 'maxChildren', 'maxRequests', 'sockTimeout'])


class WSGIServer(BaseSCGIServer, PreforkServer):
    """Prefork SCGI server.

    Takes the keywords of :class:`~flup.server.scgi_base.BaseSCGIServer`
    (``allowedServers`` defaults to None here: any peer), ``timeout``
    (seconds an application may run before SIGALRM ends the request; None
    for no limit) and the process pool's ``minSpare``, ``maxSpare``,
    ``maxChildren``, ``maxRequests`` and ``sockTimeout`` (see
    :class:`~flup.server.preforkserver.PreforkServer`).
    """

    def __init__(self, application, scriptName=NoDefault, environ=None,
                 bindAddress=('localhost', 4000), umask=None,
                 allowedServers=None, loggingLevel=logging.INFO, debug=False,
                 timeout=None, readTimeout=DEFAULT_READ_TIMEOUT,
                 gracePeriod=DEFAULT_GRACE_PERIOD, **kw):
        kw.pop('jobClass', None)
        kw.pop('jobArgs', None)
        check_keywords(kw, _PREFORK_KEYWORDS, 'WSGIServer')
        BaseSCGIServer.__init__(self, application,
                                scriptName=scriptName,
                                environ=environ,
                                multithreaded=False,
                                multiprocess=True,
                                bindAddress=bindAddress,
                                umask=umask,
                                allowedServers=allowedServers,
                                loggingLevel=loggingLevel,
                                debug=debug,
                                readTimeout=readTimeout,
                                gracePeriod=gracePeriod)
        PreforkServer.__init__(self, jobClass=Connection,
                               jobArgs=(self, timeout), **kw)
        self.gracePeriod = gracePeriod

    def run(self):
        """Serve until SIGINT or SIGTERM (return False) or SIGHUP (True)."""
        return self._serve(lambda sock: PreforkServer.run(self, sock),
                           'prefork')
