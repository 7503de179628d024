#!/bin/sh
# CGI script shared by every app vassal: says which app and host it serves.
printf 'Content-Type: text/plain\r\n\r\n'
printf 'hello from %s (Host: %s)\n' "${APP_NAME:-unknown}" "${HTTP_HOST:-none}"
