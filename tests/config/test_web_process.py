"""A served web process: uvicorn with uvloop and httptools."""


def test_uvicorn_serves_with_uvloop_and_httptools():
    """Installed with the project, so uvicorn's "auto" loop and parser take them, as
    `make run`, the bench and gunicorn's uvicorn workers start it."""
    from uvicorn.config import Config
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    config = Config(app="config.asgi:application", lifespan="off")
    config.load()
    assert config.http_protocol_class is HttpToolsProtocol
    assert config.get_loop_factory().__module__.startswith("uvloop")
