import io
import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version():
    with io.open(os.path.join(HERE, 'flup', '__init__.py'), encoding='utf-8') as f:
        for line in f:
            if line.startswith('__version__'):
                return line.split('=')[1].strip().strip("'\"")
    raise RuntimeError('__version__ not found in flup/__init__.py')


with io.open(os.path.join(HERE, 'README.md'), encoding='utf-8') as f:
    LONG_DESCRIPTION = f.read()

setup(
    name='flup',
    version=read_version(),
    description='FastCGI, SCGI and AJP WSGI servers that survive web server '
                'hang-ups (maintained fork of flup 1.0.3)',
    long_description=LONG_DESCRIPTION,
    long_description_content_type='text/markdown',
    license='BSD',
    packages=find_packages(include=['flup', 'flup.*']),
    install_requires=['six'],
    python_requires='>=2.7, !=3.0.*, !=3.1.*, !=3.2.*, !=3.3.*, !=3.4.*, !=3.5.*',
    entry_points={
        'console_scripts': ['flup = flup.__main__:main'],
        'paste.server_runner': [
            'fcgi = flup.server.paste_factory:run_fcgi_thread',
            'fcgi_thread = flup.server.paste_factory:run_fcgi_thread',
            'fcgi_fork = flup.server.paste_factory:run_fcgi_fork',
            'scgi = flup.server.paste_factory:run_scgi_thread',
            'scgi_thread = flup.server.paste_factory:run_scgi_thread',
            'scgi_fork = flup.server.paste_factory:run_scgi_fork',
            'ajp = flup.server.paste_factory:run_ajp_thread',
            'ajp_thread = flup.server.paste_factory:run_ajp_thread',
            'ajp_fork = flup.server.paste_factory:run_ajp_fork',
        ],
    },
    classifiers=[
        'Development Status :: 5 - Production/Stable',
        'License :: OSI Approved :: BSD License',
        'Programming Language :: Python :: 2.7',
        'Programming Language :: Python :: 3',
        'Topic :: Internet :: WWW/HTTP :: WSGI :: Server',
    ],
)
