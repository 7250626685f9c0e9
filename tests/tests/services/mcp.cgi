#!/bin/sh
# A minimal MCP server for busybox httpd's CGI: streamable HTTP with plain JSON answers.
# One JSON-RPC message per POST: initialize (echoes the client's protocol version),
# notifications (202, no body), tools/list (one tool, `greet`), tools/call of `greet`.
reply() {
  printf 'HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' "$1" "${#2}" "$2"
}
if [ "$REQUEST_METHOD" != POST ]; then
  printf 'HTTP/1.1 405 Method Not Allowed\r\nAllow: POST\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'
  exit 0
fi
body=$(head -c "${CONTENT_LENGTH:-0}")
field() { echo "$body" | sed -n "s/.*\"$1\" *: *\"\([^\"]*\)\".*/\1/p" | head -n 1; }
method=$(field method)
id=$(echo "$body" | sed -n 's/.*"id" *: *\([0-9][0-9]*\).*/\1/p' | head -n 1)
case "$method" in
initialize)
  version=$(field protocolVersion)
  reply '200 OK' "{\"jsonrpc\":\"2.0\",\"id\":$id,\"result\":{\"protocolVersion\":\"$version\",\"capabilities\":{\"tools\":{}},\"serverInfo\":{\"name\":\"greeter\",\"version\":\"1.0\"}}}" ;;
notifications/*)
  printf 'HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n' ;;
tools/list)
  reply '200 OK' "{\"jsonrpc\":\"2.0\",\"id\":$id,\"result\":{\"tools\":[{\"name\":\"greet\",\"description\":\"Greets someone from inside the lease\",\"inputSchema\":{\"type\":\"object\",\"properties\":{\"who\":{\"type\":\"string\"}},\"required\":[\"who\"]}}]}}" ;;
tools/call)
  who=$(field who)
  reply '200 OK' "{\"jsonrpc\":\"2.0\",\"id\":$id,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"hello, $who, from inside the lease\"}],\"isError\":false}}" ;;
*)
  reply '200 OK' "{\"jsonrpc\":\"2.0\",\"id\":${id:-null},\"error\":{\"code\":-32601,\"message\":\"method not found\"}}" ;;
esac
