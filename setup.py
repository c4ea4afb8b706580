import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read(*parts):
    with open(os.path.join(HERE, *parts), encoding="utf-8") as f:
        return f.read()


VERSION = re.search(r'__version__ = "([^"]+)"', read("wsgiprogress", "__init__.py")).group(1)

setup(
    name="wsgiprogress",
    version=VERSION,
    description=("Live upload/download progress, resumable requests and a COMET "
                 "mailbox for WSGI apps on threaded servers"),
    long_description=read("README.md"),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["wsgiprogress", "wsgiprogress.*",
                                    "flask_progress", "flask_progress.*"]),
    package_data={"wsgiprogress": ["py.typed", "static/*.js", "static/*.html"]},
    include_package_data=True,
    zip_safe=False,
    python_requires=">=3.8",
    # only what the package imports: waitress (wsgiprogress.server), as low as
    # the code works (tests/test_old_codebase.py runs on 1.4.4 in CI)
    install_requires=["waitress>=1.4.4"],
    extras_require={
        "test": [
            "pytest>=7", "pytest-timeout>=2", "webtest>=3", "hypothesis>=6", "pastedeploy>=2.0",
            "werkzeug>=2.0",
            "flask>=2.0", "wsproto>=1.2",
            "pyramid>=1.10", "redis>=4.2", "gunicorn>=20.1", "selenium>=4.10",
            # applications that speak WebSocket themselves, and their clients
            "flask-sock>=0.7", "simple-websocket>=1.1", "flask-socketio>=5.3",
            "python-socketio[client]>=5.8", "websocket-client>=1.6",
            "requests>=2.20", "websockets>=12.0",
            "tuspy>=1.1",
        ],
        "flask": ["flask>=1.1"],
        # per_file: werkzeug's sans-IO multipart decoder, with the CVE-2023-46136
        # fix (2.3.8 on the 2.3 line; wsgiprogress.settings.extras checks at start)
        "multipart": ["werkzeug>=2.3.8,!=3.0.0"],
        "redis": ["redis>=4.2"],
        "pyramid": ["pyramid>=1.10", "pastedeploy>=2.0"],
        "websocket": ["wsproto>=1.2"],
    },
    entry_points={
        "console_scripts": ["wsgiprogress-serve = wsgiprogress.cli:main"],
        "paste.server_runner": ["main = wsgiprogress.server:serve_paste"],
        "paste.filter_app_factory": ["main = wsgiprogress.paste:filter_app_factory"],
    },
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Environment :: Web Environment",
        "Framework :: Flask",
        "Framework :: Pyramid",
        "Intended Audience :: Developers",
        "License :: OSI Approved :: MIT License",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Topic :: Internet :: WWW/HTTP :: WSGI :: Middleware",
        "Typing :: Typed",
    ],
)
