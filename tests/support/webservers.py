"""Real web servers (nginx, lighttpd, Apache httpd) in front of flup, and HTTP helpers.

Each server class writes a self-contained configuration into its own
temporary folder, listens on a free 127.0.0.1 port, runs in the foreground
in a new session and is stopped (then killed) on exit.  Only the server
binaries and their module folders are taken from the system.

Addresses of the backend are written as ``'127.0.0.1:PORT'`` or
``'unix:/path'``.
"""

from __future__ import absolute_import, print_function

import io
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

from six.moves import http_client
from six.moves.urllib.parse import urlsplit

from . import procinfo
from .servers import free_port, kill_session, session_preexec

NGINX = '/usr/sbin/nginx'
LIGHTTPD = '/usr/sbin/lighttpd'
LIGHTTPD_MODULES = '/usr/lib/lighttpd'
APACHE = '/usr/sbin/apache2'
APACHE_MODULES = '/usr/lib/apache2/modules'
CGI_FCGI = '/usr/bin/cgi-fcgi'

START_ATTEMPTS = 3  # new ports tried when the chosen one was taken meanwhile


class WebServerError(RuntimeError):
    """A web server is missing, failed to start or did not listen in time."""


def require_binary(path, package):
    """Raise WebServerError unless ``path`` is an executable file."""
    if not os.access(path, os.X_OK):
        raise WebServerError(
            '%s not found; install the Debian package %s (apt-get install -y %s)'
            % (path, package, package)
        )


def format_host_port(host, port):
    """Return ``host:port``, with brackets around an IPv6 host."""
    if ':' in host:
        return '[%s]:%d' % (host, port)
    return '%s:%d' % (host, port)


def parse_backend(address):
    """Split ``'HOST:PORT'`` or ``'unix:/path'`` into ('tcp', host, port) or ('unix', path, None)."""
    if address.startswith('unix:'):
        return 'unix', address[len('unix:') :], None
    host, sep, port = address.rpartition(':')
    if not sep or not port.isdigit():
        raise ValueError(
            'invalid backend address %r: expected HOST:PORT or unix:/path' % address
        )
    return 'tcp', host.strip('[]'), int(port)


class WebServer(object):
    """Common start, readiness and stop logic; subclasses write the config."""

    name = 'web server'
    ready_timeout = 15.0
    stop_timeout = 10.0

    def __init__(self, workdir=None):
        self._own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix='flup-%s-' % self.name)
        if not os.path.isdir(self.workdir):
            os.makedirs(self.workdir)
        self.port = None
        self.process = None
        self.output_path = os.path.join(self.workdir, 'output.log')
        self.error_log_path = os.path.join(self.workdir, 'error.log')
        self.access_log_path = os.path.join(self.workdir, 'access.log')

    @property
    def url(self):
        return 'http://127.0.0.1:%d' % self.port

    @property
    def pid(self):
        return self.process.pid if self.process else None

    def command(self):
        raise NotImplementedError

    def write_config(self):
        raise NotImplementedError

    def environment(self):
        return dict(os.environ)

    def error_log_text(self):
        """Return the server's error log and its own stdout/stderr, decoded."""
        parts = []
        for path in (self.error_log_path, self.output_path):
            try:
                with io.open(path, 'rb') as log_file:
                    parts.append(log_file.read().decode('utf-8', 'replace'))
            except IOError:
                pass
        return u''.join(parts)

    def access_log_text(self):
        try:
            with io.open(self.access_log_path, 'rb') as log_file:
                return log_file.read().decode('utf-8', 'replace')
        except IOError:
            return u''

    def _spawn(self):
        output = io.open(self.output_path, 'ab')
        try:
            # SIGTERM on the death of the test process lets the server stop its own workers.
            return subprocess.Popen(
                self.command(),
                stdin=open(os.devnull, 'rb'),
                stdout=output,
                stderr=output,
                cwd=self.workdir,
                env=self.environment(),
                preexec_fn=session_preexec(signal.SIGTERM),
                close_fds=True,
            )
        finally:
            output.close()

    def _wait_listening(self):
        """Return True once the port accepts a connection, False if the server exited."""
        deadline = time.time() + self.ready_timeout
        for _ in range(int(self.ready_timeout / 0.05) + 1):
            if self.process.poll() is not None:
                return False
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.settimeout(1.0)
            try:
                probe.connect(('127.0.0.1', self.port))
                # Another process may hold the port, so check that the server owns it.
                if self.port in procinfo.listening_ports(self.process.pid):
                    return True
            except (socket.error, OSError):
                pass
            finally:
                probe.close()
            if time.time() >= deadline:
                break
            time.sleep(0.05)
        log = self.error_log_text()
        self.stop()
        raise WebServerError(
            '%s did not listen on 127.0.0.1:%d within %.0f s; log:\n%s'
            % (self.name, self.port, self.ready_timeout, log)
        )

    def start(self):
        """Write the config, start the server and wait until it listens; return self."""
        for _ in range(START_ATTEMPTS):
            self.port = free_port()
            self.write_config()
            self.process = self._spawn()
            if self._wait_listening():
                return self
            # Retry only when another process took the port in between.
            log = self.error_log_text()
            if 'in use' not in log:
                break
        log = self.error_log_text()
        self.stop()
        raise WebServerError(
            '%s failed to start (status %s); command %s; log:\n%s'
            % (self.name, self.process.returncode, ' '.join(self.command()), log)
        )

    def stop_signal(self):
        return signal.SIGTERM

    def stop(self):
        """Stop the server, killing its session after ``stop_timeout``; return True if it exited in time."""
        if self.process is None:
            return False
        if self.process.poll() is None:
            try:
                self.process.send_signal(self.stop_signal())
            except OSError:
                pass
        deadline = time.time() + self.stop_timeout
        for _ in range(int(self.stop_timeout / 0.05) + 1):
            if self.process.poll() is not None or time.time() >= deadline:
                break
            time.sleep(0.05)
        exited = self.process.poll() is not None
        kill_session(self.process.pid)
        self.process.wait()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return exited

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc_value, traceback):
        self.stop()
        return False

    def __repr__(self):
        return '<%s %s pid=%s>' % (
            type(self).__name__,
            self.url if self.port else '-',
            self.pid,
        )


# -- nginx -----------------------------------------------------------------

# CGI/1.1 variables for fastcgi_param and scgi_param.  SCRIPT_NAME and
# PATH_INFO are added separately because they depend on the options.
NGINX_CGI_PARAMS = (
    ('QUERY_STRING', '$query_string'),
    ('REQUEST_METHOD', '$request_method'),
    ('CONTENT_TYPE', '$content_type'),
    ('CONTENT_LENGTH', '$content_length'),
    ('REQUEST_URI', '$request_uri'),
    ('DOCUMENT_URI', '$document_uri'),
    ('DOCUMENT_ROOT', '$document_root'),
    ('SERVER_PROTOCOL', '$server_protocol'),
    ('REQUEST_SCHEME', '$scheme'),
    ('GATEWAY_INTERFACE', 'CGI/1.1'),
    ('SERVER_SOFTWARE', 'nginx/$nginx_version'),
    ('REMOTE_ADDR', '$remote_addr'),
    ('REMOTE_PORT', '$remote_port'),
    ('SERVER_ADDR', '$server_addr'),
    ('SERVER_PORT', '$server_port'),
    ('SERVER_NAME', '$server_name'),
    ('SCRIPT_FILENAME', '$document_root$fastcgi_script_name'),
    # php-cgi rejects requests without it while cgi.force_redirect is on (the default).
    ('REDIRECT_STATUS', '200'),
)

PATH_INFO_MODES = ('uri', 'empty', 'omit')


class Nginx(WebServer):
    """nginx passing every request to a FastCGI or SCGI backend.

    Give exactly one of ``fastcgi`` and ``scgi`` (``'HOST:PORT'`` or
    ``'unix:/path'``).  ``script_name`` is the SCRIPT_NAME prefix of the
    application.  ``path_info`` selects the PATH_INFO parameter:

    - ``'uri'``: the rest of the decoded path after ``script_name`` (the
      whole path when ``script_name`` is empty);
    - ``'empty'``: sent as an empty string;
    - ``'omit'``: not sent, so flup must derive it from REQUEST_URI.

    ``keep_conn=True`` turns on ``fastcgi_keep_conn`` with an upstream
    keepalive pool, so nginx reuses FastCGI connections.  By default nginx
    reads the whole request body before it contacts the backend, so flup
    never sees a client that hangs up mid-body.  ``request_buffering=False``
    makes nginx forward the body as it arrives.  ``extra_http``
    and ``extra_location`` are inserted verbatim into the http block and
    the location block.
    """

    name = 'nginx'

    def __init__(
        self,
        fastcgi=None,
        scgi=None,
        extra_http='',
        extra_location='',
        script_name='',
        path_info='uri',
        keep_conn=False,
        request_buffering=True,
        workdir=None,
    ):
        require_binary(NGINX, 'nginx')
        if (fastcgi is None) == (scgi is None):
            raise ValueError('give exactly one of fastcgi= and scgi=')
        if path_info not in PATH_INFO_MODES:
            raise ValueError(
                'invalid path_info %r: expected one of %s'
                % (path_info, ', '.join(PATH_INFO_MODES))
            )
        if scgi is not None and keep_conn:
            raise ValueError(
                'keep_conn applies to fastcgi only; SCGI has one request per connection'
            )
        WebServer.__init__(self, workdir)
        self.protocol = 'fastcgi' if fastcgi is not None else 'scgi'
        self.backend = fastcgi if fastcgi is not None else scgi
        parse_backend(self.backend)
        self.extra_http = extra_http
        self.extra_location = extra_location
        self.script_name = script_name.rstrip('/')
        self.path_info = path_info
        self.keep_conn = keep_conn
        self.request_buffering = request_buffering
        self.config_path = os.path.join(self.workdir, 'nginx.conf')

    def command(self):
        return [
            NGINX,
            '-p',
            self.workdir + '/',
            '-c',
            self.config_path,
            '-e',
            self.error_log_path,
            '-g',
            'daemon off;',
        ]

    def stop_signal(self):
        return signal.SIGQUIT  # graceful: finish open requests, then exit

    def _location_body(self):
        directive = self.protocol  # fastcgi_param or scgi_param
        lines = []
        if self.script_name and self.path_info == 'uri':
            # The first group becomes $fastcgi_script_name, the second $fastcgi_path_info.
            lines.append('fastcgi_split_path_info ^(%s)(.*)$;' % self.script_name)
        for name, value in NGINX_CGI_PARAMS:
            # nginx's SCGI module sends CONTENT_LENGTH first by itself, as
            # SCGI requires; a second, empty one would replace it.
            if name == 'CONTENT_LENGTH' and self.protocol == 'scgi':
                continue
            lines.append('%s_param %s "%s";' % (directive, name, value))
        if self.path_info == 'uri':
            if self.script_name and self.protocol == 'fastcgi':
                lines.append('fastcgi_param SCRIPT_NAME $fastcgi_script_name;')
                lines.append('fastcgi_param PATH_INFO $fastcgi_path_info;')
            elif self.script_name:
                # scgi has no split_path_info, so a regex location captures the parts.
                lines.append('scgi_param SCRIPT_NAME "%s";' % self.script_name)
                lines.append('scgi_param PATH_INFO $path_info;')
            else:
                lines.append('%s_param SCRIPT_NAME "";' % directive)
                lines.append('%s_param PATH_INFO $uri;' % directive)
        else:
            lines.append('%s_param SCRIPT_NAME "%s";' % (directive, self.script_name))
            if self.path_info == 'empty':
                lines.append('%s_param PATH_INFO "";' % directive)
        if self.protocol == 'fastcgi':
            lines.append('fastcgi_pass flup_backend;')
            if self.keep_conn:
                lines.append('fastcgi_keep_conn on;')
        else:
            lines.append('scgi_pass flup_backend;')
        if not self.request_buffering:
            lines.append('%s_request_buffering off;' % directive)
        lines.append(self.extra_location)
        return '\n            '.join(lines)

    def _location_header(self):
        if self.protocol == 'scgi' and self.script_name and self.path_info == 'uri':
            return 'location ~ ^%s(?<path_info>.*)$' % self.script_name
        return 'location /'

    def write_config(self):
        kind, host_or_path, port = parse_backend(self.backend)
        server = (
            'unix:%s' % host_or_path
            if kind == 'unix'
            else format_host_port(host_or_path, port)
        )
        keepalive = 'keepalive 8;' if self.keep_conn else ''
        temp = os.path.join(self.workdir, 'temp')
        if not os.path.isdir(temp):
            os.makedirs(temp)
        htdocs = os.path.join(self.workdir, 'htdocs')
        if not os.path.isdir(htdocs):
            os.makedirs(htdocs)
        # Workers run as root so they can reach Unix sockets in private test folders.
        user = 'user root root;' if os.geteuid() == 0 else ''
        config = '''
%(user)s
worker_processes 1;
pid %(workdir)s/nginx.pid;
error_log %(error_log)s info;
events { worker_connections 256; }
http {
    access_log %(access_log)s;
    default_type application/octet-stream;
    client_body_temp_path %(temp)s/client_body;
    proxy_temp_path %(temp)s/proxy;
    fastcgi_temp_path %(temp)s/fastcgi;
    uwsgi_temp_path %(temp)s/uwsgi;
    scgi_temp_path %(temp)s/scgi;
    upstream flup_backend {
        server %(server)s;
        %(keepalive)s
    }
    %(extra_http)s
    server {
        listen 127.0.0.1:%(port)d;
        server_name localhost;
        root %(htdocs)s;
        %(location_header)s {
            %(location_body)s
        }
    }
}
''' % {
            'user': user,
            'workdir': self.workdir,
            'error_log': self.error_log_path,
            'access_log': self.access_log_path,
            'temp': temp,
            'server': server,
            'keepalive': keepalive,
            'extra_http': self.extra_http,
            'port': self.port,
            'htdocs': htdocs,
            'location_header': self._location_header(),
            'location_body': self._location_body(),
        }
        with io.open(self.config_path, 'w') as config_file:
            config_file.write(
                config.decode('utf-8') if isinstance(config, bytes) else config
            )


# -- lighttpd --------------------------------------------------------------


def _lighttpd_string(text):
    return '"%s"' % text.replace('\\', '\\\\').replace('"', '\\"')


class Lighttpd(WebServer):
    """lighttpd 1.4 passing every request to a FastCGI, SCGI or AJP13 backend.

    Give exactly one of:

    - ``fastcgi='HOST:PORT'`` or ``fastcgi='unix:/path'``: connect to a
      running backend;
    - ``bin_path=[argv...]``: lighttpd itself starts the backend with a
      listening Unix socket as standard input (serve.py ``--bind fd0``),
      passing ``bin_environment``;
    - ``scgi='HOST:PORT'`` or ``scgi='unix:/path'``;
    - ``ajp13='HOST:PORT'``.

    ``prefix`` is the URL prefix handed to the backend (``'/'`` for all).
    With the prefix ``'/'`` lighttpd sends the first path segment as
    SCRIPT_NAME, unless ``fix_root_scriptname`` (the default) makes it send
    an empty SCRIPT_NAME and the whole path as PATH_INFO.
    ``extra_config`` is appended verbatim to the configuration file.
    """

    name = 'lighttpd'

    def __init__(
        self,
        fastcgi=None,
        scgi=None,
        ajp13=None,
        bin_path=None,
        bin_environment=None,
        prefix='/',
        fix_root_scriptname=True,
        max_procs=1,
        extra_config='',
        workdir=None,
    ):
        require_binary(LIGHTTPD, 'lighttpd')
        backends = [
            value for value in (fastcgi, scgi, ajp13, bin_path) if value is not None
        ]
        if len(backends) != 1:
            raise ValueError(
                'give exactly one of fastcgi=, scgi=, ajp13= and bin_path='
            )
        WebServer.__init__(self, workdir)
        self.fastcgi = fastcgi
        self.scgi = scgi
        self.ajp13 = ajp13
        self.bin_path = list(bin_path) if bin_path is not None else None
        # lighttpd 1.4 splits "bin-path" at spaces and has no quoting.
        if self.bin_path and any(
            ' ' in argument or not argument for argument in self.bin_path
        ):
            raise ValueError(
                'invalid bin_path %r: lighttpd cannot pass empty arguments '
                'or arguments with spaces' % (self.bin_path,)
            )
        self.fix_root_scriptname = fix_root_scriptname
        self.bin_environment = dict(bin_environment or {})
        self.prefix = prefix
        self.max_procs = max_procs
        self.extra_config = extra_config
        self.config_path = os.path.join(self.workdir, 'lighttpd.conf')

    def command(self):
        return [LIGHTTPD, '-D', '-f', self.config_path, '-m', LIGHTTPD_MODULES]

    def _backend_options(self, address):
        kind, host_or_path, port = parse_backend(address)
        if kind == 'unix':
            return ['"socket" => %s' % _lighttpd_string(host_or_path)]
        return ['"host" => %s' % _lighttpd_string(host_or_path), '"port" => %d' % port]

    def _handler_config(self):
        options = ['"check-local" => "disable"']
        if self.fix_root_scriptname and self.prefix == '/':
            options.append('"fix-root-scriptname" => "enable"')
        if self.bin_path is not None:
            socket_path = os.path.join(self.workdir, 'spawned.sock')
            options.append(
                '"bin-path" => %s' % _lighttpd_string(' '.join(self.bin_path))
            )
            options.append('"socket" => %s' % _lighttpd_string(socket_path))
            options.append('"max-procs" => %d' % self.max_procs)
            if self.bin_environment:
                pairs = ', '.join(
                    '%s => %s' % (_lighttpd_string(name), _lighttpd_string(value))
                    for name, value in sorted(self.bin_environment.items())
                )
                options.append('"bin-environment" => (%s)' % pairs)
            return 'fastcgi.server', options
        if self.fastcgi is not None:
            return 'fastcgi.server', options + self._backend_options(self.fastcgi)
        if self.scgi is not None:
            return 'scgi.server', options + self._backend_options(self.scgi)
        return 'ajp13.server', options + self._backend_options(self.ajp13)

    def write_config(self):
        htdocs = os.path.join(self.workdir, 'htdocs')
        uploads = os.path.join(self.workdir, 'uploads')
        for folder in (htdocs, uploads):
            if not os.path.isdir(folder):
                os.makedirs(folder)
        directive, options = self._handler_config()
        config = '\n'.join(
            [
                'server.modules = ("mod_accesslog", "mod_fastcgi", "mod_scgi", "mod_ajp13")',
                'server.document-root = %s' % _lighttpd_string(htdocs),
                'server.upload-dirs = (%s)' % _lighttpd_string(uploads),
                'server.bind = "127.0.0.1"',
                'server.port = %d' % self.port,
                'server.errorlog = %s' % _lighttpd_string(self.error_log_path),
                'accesslog.filename = %s' % _lighttpd_string(self.access_log_path),
                'server.max-worker = 0',
                '%s = (%s => ((%s)))'
                % (directive, _lighttpd_string(self.prefix), ', '.join(options)),
                self.extra_config,
                '',
            ]
        )
        with io.open(self.config_path, 'w') as config_file:
            config_file.write(
                config.decode('utf-8') if isinstance(config, bytes) else config
            )


# -- Apache httpd ----------------------------------------------------------

APACHE_BASE_MODULES = ('mpm_event', 'authz_core', 'unixd', 'log_config', 'proxy')
APACHE_PROXY_MODULES = {'fcgi': 'proxy_fcgi', 'ajp': 'proxy_ajp', 'scgi': 'proxy_scgi'}


_apache_builtins = []


def apache_builtin_modules():
    """Return the module names compiled into the apache2 binary (``apache2 -l``).

    LoadModule fails for those, and which ones are built in differs between
    builds (Debian 12 builds in unixd and log_config).
    """
    if not _apache_builtins:
        listing = subprocess.check_output([APACHE, '-l']).decode('ascii', 'replace')
        for line in listing.splitlines():
            line = line.strip()
            if line.startswith('mod_') and line.endswith('.c'):
                _apache_builtins.append(line[len('mod_') : -len('.c')])
    return list(_apache_builtins)


class ApacheHttpd(WebServer):
    """Apache httpd 2.4 with mod_proxy_fcgi, mod_proxy_ajp or mod_proxy_scgi.

    ``backend`` is ``'HOST:PORT'`` or ``'unix:/path'`` (Unix sockets work for
    fcgi and scgi only) and ``proxy`` one of fcgi, ajp and scgi.  Requests
    under ``prefix`` go to the backend.  The server runs with ``-X`` (one
    process, no detaching).  When started as root, httpd switches to the
    user ``www-data`` (set by ``user``), so a Unix socket must be
    reachable for that user.  ``extra_modules`` names more modules to load
    (``'setenvif'`` loads mod_setenvif.so) and ``extra_config`` is appended
    verbatim.

    With the default ``ProxyFCGIBackendType FPM``, httpd 2.4 sends the whole
    request path as SCRIPT_NAME and an empty PATH_INFO.
    """

    name = 'apache'

    def __init__(
        self,
        backend,
        proxy='fcgi',
        prefix='/',
        user='www-data',
        extra_modules=(),
        extra_config='',
        workdir=None,
    ):
        require_binary(APACHE, 'apache2')
        if proxy not in APACHE_PROXY_MODULES:
            raise ValueError(
                'invalid proxy %r: expected one of %s'
                % (proxy, ', '.join(sorted(APACHE_PROXY_MODULES)))
            )
        kind, _, _ = parse_backend(backend)
        if kind == 'unix' and proxy == 'ajp':
            raise ValueError(
                'mod_proxy_ajp cannot connect to a Unix socket; give HOST:PORT'
            )
        WebServer.__init__(self, workdir)
        self.backend = backend
        self.proxy = proxy
        self.prefix = prefix
        self.user = user
        self.extra_modules = tuple(extra_modules)
        self.extra_config = extra_config
        self.config_path = os.path.join(self.workdir, 'httpd.conf')

    def command(self):
        return [APACHE, '-X', '-d', self.workdir, '-f', self.config_path]

    def _proxy_url(self):
        kind, host_or_path, port = parse_backend(self.backend)
        path = self.prefix if self.prefix.endswith('/') else self.prefix + '/'
        if kind == 'unix':
            return 'unix:%s|%s://localhost%s' % (host_or_path, self.proxy, path)
        return '%s://%s%s' % (self.proxy, format_host_port(host_or_path, port), path)

    def write_config(self):
        builtins = apache_builtin_modules()
        requested = (
            APACHE_BASE_MODULES
            + (APACHE_PROXY_MODULES[self.proxy],)
            + self.extra_modules
        )
        modules = [name for name in requested if name not in builtins]
        lines = [
            'LoadModule %s_module %s/mod_%s.so' % (name, APACHE_MODULES, name)
            for name in modules
        ]
        if os.geteuid() == 0:
            lines += ['User %s' % self.user, 'Group %s' % self.user]
        lines += [
            'ServerRoot %s' % self.workdir,
            'ServerName 127.0.0.1',
            'Listen 127.0.0.1:%d' % self.port,
            'PidFile %s' % os.path.join(self.workdir, 'httpd.pid'),
            'DefaultRuntimeDir %s' % self.workdir,
            'ErrorLog %s' % self.error_log_path,
            'LogLevel info proxy:debug %s:debug' % APACHE_PROXY_MODULES[self.proxy],
            'LogFormat "%h %r %>s %b %D" short',
            'CustomLog %s short' % self.access_log_path,
            'DocumentRoot %s' % self.workdir,
            'ProxyPass "%s" "%s"' % (self.prefix, self._proxy_url()),
            self.extra_config,
            '',
        ]
        with io.open(self.config_path, 'w') as config_file:
            config = '\n'.join(lines)
            config_file.write(
                config.decode('utf-8') if isinstance(config, bytes) else config
            )


# -- HTTP and FastCGI clients ------------------------------------------------


def _split_url(url):
    parts = urlsplit(url)
    if parts.hostname not in ('127.0.0.1', 'localhost', '::1'):
        raise ValueError(
            'invalid URL %r: the tests connect only to 127.0.0.1, localhost or ::1'
            % url
        )
    path = parts.path or '/'
    if parts.query:
        path += '?' + parts.query
    return parts.hostname, parts.port or 80, path


def http_request(method, url, body=None, headers=None, timeout=30.0):
    """Send one HTTP/1.1 request and return (status, headers, body).

    Header names in the returned dict are lower case.  The connection is
    closed afterwards.  ``timeout`` applies to connecting and to each read.
    """
    host, port, path = _split_url(url)
    connection = http_client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        data = response.read()
        response_headers = dict(
            (name.lower(), value) for name, value in response.getheaders()
        )
        return response.status, response_headers, data
    finally:
        connection.close()


def http_get(url, headers=None, timeout=30.0):
    """GET ``url``; return (status, headers with lower-case names, body bytes)."""
    return http_request('GET', url, headers=headers, timeout=timeout)


def http_post(url, body, headers=None, timeout=30.0):
    """POST ``body`` (bytes) to ``url``; return (status, headers, body bytes)."""
    return http_request('POST', url, body=body, headers=headers, timeout=timeout)


MAX_ABORT_READ = 1 << 20  # bytes kept from the response before hanging up


def abort_http(
    url,
    after_seconds,
    reset=True,
    method=None,
    content_length=None,
    body=b'',
    headers=None,
):
    """Send a request on a raw connection, wait, then hang up; return the bytes received.

    With ``content_length`` set, the request announces that many body bytes
    but sends only ``body`` (for example Content-Length 100 and 10 bytes), so
    the web server is still waiting for the body when the client goes away.
    ``method`` defaults to POST when a body is announced, GET otherwise.
    ``reset=True`` closes with SO_LINGER 0 so the peer gets a TCP RST;
    ``reset=False`` closes normally (FIN).  Up to 1 MiB of the response read
    during the wait is returned.
    """
    host, port, path = _split_url(url)
    if method is None:
        method = 'POST' if content_length is not None else 'GET'
    lines = ['%s %s HTTP/1.1' % (method, path), 'Host: %s:%d' % (host, port)]
    if content_length is not None:
        lines.append('Content-Length: %d' % content_length)
        lines.append('Content-Type: application/octet-stream')
    for name, value in sorted((headers or {}).items()):
        lines.append('%s: %s' % (name, value))
    request = ('\r\n'.join(lines) + '\r\n\r\n').encode('latin-1') + body

    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    received = []
    received_size = 0
    try:
        sock.settimeout(10.0)
        sock.connect((host, port))
        sock.sendall(request)
        deadline = time.time() + after_seconds
        # Read what arrives during the wait, so a full receive buffer does not
        # stall the server before the hang-up.
        while True:
            remaining = deadline - time.time()
            if remaining <= 0:
                break
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            except socket.error:
                break
            if not chunk:
                # The server closed first; wait out the rest without reading.
                time.sleep(max(deadline - time.time(), 0))
                break
            if received_size < MAX_ABORT_READ:
                received.append(chunk)
                received_size += len(chunk)
    finally:
        if reset:
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0)
            )
        sock.close()
    return b''.join(received)


def parse_cgi_response(data):
    """Split a CGI response (``Status:`` line, headers, blank line, body).

    Returns (status code as int, headers with lower-case names, body bytes).
    A response with no Status header has status 200, as CGI/1.1 specifies.
    """
    for separator in (b'\r\n\r\n', b'\n\n'):
        head, found, body = data.partition(separator)
        if found:
            break
    else:
        raise ValueError(
            'invalid CGI response: no blank line after the headers in %r' % data[:200]
        )
    headers = {}
    for line in head.splitlines():
        name, _, value = line.decode('latin-1').partition(':')
        headers[name.strip().lower()] = value.strip()
    status = int(headers.get('status', '200').split()[0])
    return status, headers, body


class CommandTimeout(RuntimeError):
    """A command did not finish in time and was killed."""


def run_command(argv, input_bytes=b'', env=None, timeout=30.0):
    """Run ``argv`` with ``input_bytes`` on stdin; return (returncode, stdout, stderr).

    The process is killed and CommandTimeout raised after ``timeout`` seconds
    (Python 2.7's ``communicate`` has no timeout, so a timer thread kills it).
    """
    process = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        close_fds=True,
    )
    timed_out = []

    def kill():
        timed_out.append(True)
        try:
            process.kill()
        except OSError:
            pass

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        stdout, stderr = process.communicate(input_bytes)
    finally:
        timer.cancel()
    if timed_out:
        raise CommandTimeout(
            '%s did not finish within %.0f s; stderr: %r'
            % (' '.join(argv), timeout, stderr[-2000:])
        )
    return process.returncode, stdout, stderr


def cgi_fcgi(address, params_env, body=b'', timeout=30.0):
    """Send one FastCGI request with Debian's ``cgi-fcgi`` and return its stdout.

    ``address`` is (host, port), ``'HOST:PORT'`` or a Unix socket path.
    ``params_env`` becomes the whole environment of cgi-fcgi, which sends it
    as FCGI_PARAMS; CONTENT_LENGTH is set from ``body`` when missing, because
    cgi-fcgi forwards only that many bytes of stdin.  The output is the raw
    CGI response; ``parse_cgi_response`` splits it.  Raises RuntimeError if
    cgi-fcgi exits with an error.
    """
    require_binary(CGI_FCGI, 'libfcgi-bin')
    if isinstance(address, tuple):
        connect_to = '%s:%d' % (address[0], address[1])
    else:
        connect_to = address[len('unix:') :] if address.startswith('unix:') else address
    environ = dict((str(name), str(value)) for name, value in params_env.items())
    if body and 'CONTENT_LENGTH' not in environ:
        environ['CONTENT_LENGTH'] = str(len(body))
    returncode, stdout, stderr = run_command(
        [CGI_FCGI, '-bind', '-connect', connect_to],
        input_bytes=body,
        env=environ,
        timeout=timeout,
    )
    if returncode != 0:
        raise RuntimeError(
            'cgi-fcgi -connect %s failed with status %d; stderr: %r; stdout: %r'
            % (connect_to, returncode, stderr[-2000:], stdout[-2000:])
        )
    return stdout
