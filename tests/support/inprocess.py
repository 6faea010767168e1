"""Run a flup server in a thread of the test process.

Tests that need an application written inline, or the server's log records
through pytest's ``caplog``, use this instead of ``ServerProcess``.  The
server's ``run()`` then runs outside the main thread, where it installs no
signal handlers; ``shutdown()`` stops it.
"""

from __future__ import absolute_import

import os
import socket
import tempfile
import threading

from .servers import free_port

JOIN_TIMEOUT = 15.0


class InProcessServer(object):
    """``InProcessServer(server_class, app, bind='tcp', **keywords)``.

    ``bind`` is ``'tcp'``, ``'tcp6'`` or ``'unix'``.  Inside the ``with``
    block, ``address`` is where the server listens and ``server`` is the
    WSGIServer instance; ``result`` is what ``run()`` returned once the
    block has ended.
    """

    def __init__(self, server_class, app, bind='tcp', **keywords):
        self.server_class = server_class
        self.app = app
        self.bind = bind
        self.keywords = keywords
        self.address = None
        self.server = None
        self.result = None
        self.error = None
        self._thread = None
        self._tempdir = None

    def _choose_address(self):
        if self.bind == 'tcp':
            return ('127.0.0.1', free_port())
        if self.bind == 'tcp6':
            return ('::1', free_port('::1'), 0, 0)
        self._tempdir = tempfile.mkdtemp(prefix='flup-inproc-')
        return os.path.join(self._tempdir, 'fcgi.sock')

    def _run(self):
        try:
            self.result = self.server.run()
        except Exception as error:  # reported by __exit__
            self.error = error

    def __enter__(self):
        self.address = self._choose_address()
        self.server = self.server_class(self.app, bindAddress=self.address,
                                        **self.keywords)
        self._thread = threading.Thread(target=self._run, name='flup-test-server')
        self._thread.daemon = True
        self._thread.start()
        self._wait_ready()
        return self

    def _wait_ready(self):
        for _ in range(200):
            if not self._thread.is_alive():
                raise RuntimeError('server thread ended early: %r' % (self.error,))
            family = (socket.AF_UNIX if isinstance(self.address, str)
                      else socket.AF_INET6 if len(self.address) > 2
                      else socket.AF_INET)
            probe = socket.socket(family, socket.SOCK_STREAM)
            probe.settimeout(1.0)
            try:
                probe.connect(self.address)
                # Wait until the server has accepted the probe and closed
                # it, so that tests start with no connection in progress.
                probe.shutdown(socket.SHUT_WR)
                probe.settimeout(5.0)
                probe.recv(1)
                return
            except socket.error:
                self._thread.join(0.05)
            finally:
                probe.close()
        raise RuntimeError('server did not start listening on %r' % (self.address,))

    def stop(self):
        self.server.shutdown()
        self._thread.join(JOIN_TIMEOUT)
        return not self._thread.is_alive()

    def __exit__(self, *exc_info):
        stopped = self.stop()
        if self._tempdir:
            for name in os.listdir(self._tempdir):
                os.unlink(os.path.join(self._tempdir, name))
            os.rmdir(self._tempdir)
        if not stopped:
            raise AssertionError('server.run() did not return within %.0f s '
                                 'of shutdown()' % JOIN_TIMEOUT)
        if self.error is not None:
            raise self.error
