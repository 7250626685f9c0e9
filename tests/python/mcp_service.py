"""Finds a published MCP service and uses it, with the official Python MCP SDK.

Usage: python mcp_service.py NODE_MCP_URL SERVICE_URL NAME

1. On the node's `/mcp` endpoint: calls the `list_services` tool with `kind: mcp` and checks
   a service named NAME is listed.
2. Through SERVICE_URL (a local port `agora tunnel --grant` forwards to the service):
   initialize, list the tools, call `greet`.

Prints one JSON line with what it saw; exits non-zero on any failure.
"""

import asyncio
import json
import sys

from mcp import Client


async def session(node_mcp, service_url, name):
    seen = {}
    async with Client(node_mcp, mode="legacy", read_timeout_seconds=30) as node:
        result = await node.call_tool("list_services", {"kind": "mcp"})
        assert not result.is_error, result
        listed = result.structured_content["services"]
        seen["listed"] = sorted(s["name"] for s in listed)
        match = [s for s in listed if s["name"] == name]
        assert match, listed
        seen["lease"] = match[0]["lease"]
        seen["port"] = match[0]["port"]
    async with Client(service_url, mode="legacy", read_timeout_seconds=30) as service:
        info = service.server_info
        seen["server_name"] = info.name if info else None
        seen["tools"] = sorted(t.name for t in (await service.list_tools()).tools)
        result = await service.call_tool("greet", {"who": "agent-b"})
        assert not result.is_error, result
        seen["greeting"] = result.content[0].text
    return seen


def main():
    node_mcp, service_url, name = sys.argv[1], sys.argv[2], sys.argv[3]
    seen = asyncio.run(session(node_mcp, service_url, name))
    print(json.dumps(seen), flush=True)


if __name__ == "__main__":
    main()
