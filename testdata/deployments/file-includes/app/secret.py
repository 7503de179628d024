import os


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("secret %s build %s\n" % (os.environ.get("APP_SECRET"), os.environ.get("APP_BUILD"))).encode()]
