import os


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("%s\n" % os.environ.get("APP_NAME")).encode()]
