"""Installing with pip and vendoring the package folder both give a working
flup on the Python running the tests."""

from __future__ import absolute_import

import os
import shutil
import subprocess
import sys

from .support.servers import REPO_ROOT

CGI_ENVIRON = {
    'FCGI_FORCE_CGI': 'Y',
    'REQUEST_METHOD': 'GET',
    'SCRIPT_NAME': '',
    'PATH_INFO': '/vendored',
    'QUERY_STRING': '',
    'SERVER_NAME': 'localhost',
    'SERVER_PORT': '80',
    'SERVER_PROTOCOL': 'HTTP/1.1',
}

APP_SCRIPT = '''
import flup, sys
from flup.server.fcgi import WSGIServer

def app(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [('%s %s' % (flup.__file__, environ['PATH_INFO'])).encode('utf-8')]

WSGIServer(app).run()
'''


def run_python(code, path, extra_env=None):
    environ = dict(os.environ)
    environ['PYTHONPATH'] = path
    environ.update(extra_env or {})
    process = subprocess.Popen([sys.executable, '-c', code],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.PIPE, env=environ,
                               cwd=os.path.dirname(path))
    out, err = process.communicate(b'')
    return process.returncode, out, err


def test_pip_install_gives_metadata_and_modules(tmp_path):
    target = str(tmp_path / 'site')
    build_copy = str(tmp_path / 'src')
    # Build from a copy so that build/ and *.egg-info stay out of the repo.
    shutil.copytree(REPO_ROOT, build_copy, ignore=shutil.ignore_patterns(
        '.git', '.tox', '.upstream', '__pycache__', '*.egg-info', 'build'))
    subprocess.check_call([sys.executable, '-m', 'pip', 'install', '--quiet',
                           '--no-deps', '--target',
                           target, build_copy])
    status, out, err = run_python(
        'import flup, flup.server.fcgi, flup.server.fcgi_fork, '
        'flup.server.fcgi_single, flup.client.fcgi_app; '
        'print(flup.__version__); print(flup.__file__)', target)
    assert status == 0, err
    version, location = out.decode('utf-8').split()
    assert version == '1.1.0.dev0'
    assert location.startswith(target)
    metadata = [name for name in os.listdir(target)
                if name.startswith('flup-') and name.endswith(('.dist-info', '.egg-info'))]
    assert len(metadata) == 1
    entry_points_path = os.path.join(target, metadata[0], 'entry_points.txt')
    with open(entry_points_path) as entry_points:
        text = entry_points.read()
    assert 'flup = flup.__main__:main' in text
    assert 'fcgi_thread = flup.server.paste_factory:run_fcgi_thread' in text


def test_vendored_copy_serves_with_six_only(tmp_path):
    application_dir = tmp_path / 'legacy_app'
    application_dir.mkdir()
    shutil.copytree(os.path.join(REPO_ROOT, 'flup'),
                    str(application_dir / 'flup'),
                    ignore=shutil.ignore_patterns('__pycache__'))
    status, out, err = run_python(APP_SCRIPT, str(application_dir), CGI_ENVIRON)
    assert status == 0, err
    assert out.startswith(b'Status: 200 OK\r\n'), out
    assert str(application_dir).encode('utf-8') in out
    assert out.endswith(b' /vendored')
