"""A bounded pool of worker threads.

The pool never runs more than ``maxThreads`` threads.  ``addJob`` with
``allowQueuing=False`` returns False at once when no thread is free and no
new one may start, so a caller can reply "overloaded" instead of waiting.
"""

from __future__ import absolute_import

import collections
import logging
import threading

from flup._compat import monotonic, thread_error_types

__all__ = ['ThreadPool', 'DEFAULT_MAX_THREADS']

log = logging.getLogger(__name__)

# Upstream flup's default was sys.maxsize, which let every aborted request
# keep a thread until the process could start no more.  128 is well above
# the concurrency a single Python process serves well, and far below the
# thread limits of common systems.
DEFAULT_MAX_THREADS = 128

# Seconds between checks, by each idle thread, that no more than maxSpare
# threads are idle.
_IDLE_CHECK_INTERVAL = 1.0


class ThreadPool(object):
    """Run jobs (objects with a ``run()`` method) on a bounded set of threads.

    ``minSpare`` threads are started at once and kept idle; idle threads
    beyond ``maxSpare`` exit; at most ``maxThreads`` threads exist at any
    time.  ``maxThreads`` below ``minSpare`` is raised to ``minSpare``.
    """

    def __init__(self, minSpare=1, maxSpare=5, maxThreads=DEFAULT_MAX_THREADS):
        if maxThreads is None or maxThreads < 1:
            raise ValueError('maxThreads must be a positive number, not %r'
                             % (maxThreads,))
        self._min_spare = minSpare
        self._max_spare = max(minSpare, maxSpare)
        self._max_threads = max(minSpare, maxThreads)
        self._lock = threading.Condition(threading.Lock())
        self._jobs = collections.deque()
        self._thread_count = 0
        self._idle_count = 0
        self._stopping = False
        with self._lock:
            for _ in range(minSpare):
                if not self._start_thread():
                    break

    @property
    def max_threads(self):
        return self._max_threads

    @property
    def thread_count(self):
        """Number of worker threads alive, busy or idle."""
        return self._thread_count

    @property
    def busy_count(self):
        """Number of worker threads running a job."""
        with self._lock:
            return self._thread_count - self._idle_count

    def addJob(self, job, allowQueuing=True):
        """Run ``job.run()`` on a pool thread; return False if it cannot.

        With ``allowQueuing`` the job waits in a queue when every thread is
        busy and the pool is at its limit.  Without it, False comes back at
        once in that case, and also when the system refuses a new thread.
        """
        with self._lock:
            if self._stopping:
                return False
            queued = len(self._jobs)
            if self._idle_count > queued:
                self._jobs.append(job)
                self._lock.notify()
                return True
            if self._thread_count < self._max_threads and self._start_thread():
                self._jobs.append(job)
                self._lock.notify()
                return True
            if allowQueuing:
                self._jobs.append(job)
                return True
            return False

    def shutdown(self, timeout=None):
        """Stop the idle threads; return True if every thread has exited.

        Busy threads finish their job first.  ``timeout`` bounds the wait in
        seconds; None waits for running jobs without limit.
        """
        deadline = None if timeout is None else monotonic() + timeout
        with self._lock:
            self._stopping = True
            self._jobs.clear()
            self._lock.notify_all()
            while self._thread_count:
                if deadline is None:
                    self._lock.wait(1.0)
                    continue
                remaining = deadline - monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
        return True

    def _start_thread(self):
        # Called with the lock held.
        thread = threading.Thread(target=self._worker, name='flup-worker')
        thread.daemon = True
        try:
            thread.start()
        except thread_error_types() as error:
            log.warning('cannot start another worker thread (%d running): %s',
                        self._thread_count, error)
            return False
        self._thread_count += 1
        self._idle_count += 1
        return True

    def _worker(self):
        lock = self._lock
        lock.acquire()
        idle = True
        idle_since = monotonic()
        try:
            while True:
                while not self._jobs and not self._stopping:
                    # A surplus thread ends only after a whole interval
                    # without work, so that steady load does not start and
                    # end a thread for every job.
                    if (self._idle_count > self._max_spare
                            and monotonic() - idle_since >= _IDLE_CHECK_INTERVAL):
                        return
                    lock.wait(_IDLE_CHECK_INTERVAL)
                if self._stopping:
                    break
                job = self._jobs.popleft()
                self._idle_count -= 1
                idle = False
                lock.release()
                try:
                    self._run_job(job)
                finally:
                    job = None
                    lock.acquire()
                self._idle_count += 1
                idle = True
                idle_since = monotonic()
        finally:
            if idle:
                self._idle_count -= 1
            self._thread_count -= 1
            lock.notify_all()
            lock.release()

    @staticmethod
    def _run_job(job):
        try:
            job.run()
        except Exception:
            log.exception('job %r raised an exception', job)
