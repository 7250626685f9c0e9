"""Drives Agora's MCP server with the official Python MCP SDK (an independent client).

Usage: python mcp_session.py stdio AGORA_BIN NODE_URL MODE
       python mcp_session.py http  MCP_URL MODE
MODE is `legacy` (the initialize handshake) or `auto` (server/discover, else initialize).

Completes a session (initialize, list tools, call `list_offers`, call `get_offer` with a bad
id) and prints one JSON line with what it saw; exits non-zero on any failure.
"""

import asyncio
import json
import sys

from mcp import Client
from mcp.client.stdio import StdioServerParameters


async def session(server, mode):
    seen = {}
    async with Client(server, mode=mode, read_timeout_seconds=30) as client:
        seen["protocol_version"] = client.protocol_version
        info = client.server_info
        seen["server_name"] = info.name if info else None
        tools = (await client.list_tools()).tools
        seen["tools"] = sorted(t.name for t in tools)
        by_name = {t.name: t for t in tools}
        offers_tool = by_name["list_offers"]
        seen["list_offers_input"] = sorted(offers_tool.input_schema.get("properties", {}))
        seen["list_offers_has_output_schema"] = offers_tool.output_schema is not None

        # The SDK validates structured content against the tool's output schema.
        result = await client.call_tool("list_offers", {})
        assert not result.is_error, result
        offers = result.structured_content
        seen["offers"] = offers["count"]
        assert offers["count"] == len(offers["offers"]), offers

        result = await client.call_tool("list_offers", {"runtime": "sandbox", "sort": "newest", "limit": 5})
        assert not result.is_error, result
        seen["sandbox_offers"] = result.structured_content["count"]

        if offers["offers"]:
            provider = offers["offers"][0]["provider"]
            result = await client.call_tool("get_offer", {"provider": provider})
            assert not result.is_error, result
            assert result.structured_content["provider"] == provider
            seen["got_offer"] = provider

        result = await client.call_tool("list_offers", {"runtime": "mainframe"})
        assert result.is_error, result
        seen["bad_runtime_code"] = result.structured_content["error"]["code"]

        result = await client.call_tool("node_info", {})
        assert not result.is_error, result
        seen["node_id"] = result.structured_content["id"]
    return seen


def main():
    kind = sys.argv[1]
    if kind == "stdio":
        agora, node, mode = sys.argv[2], sys.argv[3], sys.argv[4]
        server = StdioServerParameters(
            command=agora,
            args=["--log", "debug", "mcp", "--node", node],
        )
    elif kind == "http":
        server, mode = sys.argv[2], sys.argv[3]
    else:
        raise SystemExit(f"unknown transport {kind}")
    seen = asyncio.run(session(server, mode))
    print(json.dumps(seen), flush=True)


if __name__ == "__main__":
    main()
