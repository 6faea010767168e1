"""Live counters a server keeps for operators, logs and tests."""

from __future__ import absolute_import

import threading


class ServerStats(object):
    """Thread-safe counts of one server process.

    ``snapshot()`` returns a dict with ``connections`` (open now),
    ``active_requests`` (running now), ``threads_in_use`` (pool threads
    running a job; 0 for models without a pool), ``requests`` (finished
    since start), ``aborted_requests`` (ended by a hang-up or an abort) and
    ``discarded_requests`` (request threads the server stopped waiting for).
    """

    def __init__(self, pool=None):
        self._lock = threading.Lock()
        self._pool = pool
        self.connections = 0
        self.active_requests = 0
        self.requests = 0
        self.aborted_requests = 0
        self.discarded_requests = 0

    def connection_opened(self):
        with self._lock:
            self.connections += 1

    def connection_closed(self):
        with self._lock:
            self.connections -= 1

    def request_started(self):
        with self._lock:
            self.active_requests += 1

    def request_finished(self, aborted):
        with self._lock:
            self.active_requests -= 1
            self.requests += 1
            if aborted:
                self.aborted_requests += 1

    def requests_discarded(self, count):
        with self._lock:
            self.discarded_requests += count

    def snapshot(self):
        pool = self._pool
        with self._lock:
            result = {
                'connections': self.connections,
                'active_requests': self.active_requests,
                'requests': self.requests,
                'aborted_requests': self.aborted_requests,
                'discarded_requests': self.discarded_requests,
            }
        result['threads_in_use'] = pool.busy_count if pool is not None else 0
        result['threads'] = pool.thread_count if pool is not None else 0
        return result
