"""Drives Agora's MCP server with the official Python MCP SDK (an independent client).

Usage: python mcp_session.py stdio AGORA_BIN NODE_URL MODE [KEY_FILE]
       python mcp_session.py http  MCP_URL MODE [TOKEN]
MODE is `legacy` (the initialize handshake) or `auto` (server/discover, else initialize).

Completes a session (initialize, list tools, call `list_offers`, call `get_offer` with a bad
id) and prints one JSON line with what it saw; exits non-zero on any failure. With a key
file, `agora mcp --key` signs beside the agent (signing up with the `signup` tool first); with a token (from
`agora agent token`), the node's `/mcp` acts for the agent under its delegation: either way
the session also runs a workload: `run`, `list_leases`, `exec`, `logs`, `stop`. Without
either, `run` and `list_leases` must fail with `delegation_required` over http.
"""

import asyncio
import json
import sys

from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def session(server, mode, keyed):
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

        if not keyed and "run" in by_name:
            result = await client.call_tool("run", {"command": ["true"]})
            assert result.is_error, result
            seen["run_without_token"] = result.structured_content["error"]["code"]

        if not keyed and "list_leases" in by_name:
            # Listing an agent's leases needs its proof, or its token.
            result = await client.call_tool("list_leases", {})
            assert result.is_error, result
            seen["list_without_token"] = result.structured_content["error"]["code"]

        if keyed and "signup" in by_name:
            # A new key beside the agent: sign up through the tool first.
            result = await client.call_tool("signup", {"name": "mcp agent"})
            assert not result.is_error, result
            seen["signed_up"] = result.structured_content["agent"]

        if keyed:
            result = await client.call_tool(
                "run", {"command": ["sh", "-c", "echo hello from mcp; sleep 60"], "lifetime_secs": 120}
            )
            assert not result.is_error, result
            lease = result.structured_content["lease"]["lease"]
            seen["run_provider"] = result.structured_content["lease"]["provider"]
            # The agent's own listing (a read proof signed for the node) shows the lease.
            result = await client.call_tool("list_leases", {"limit": 50})
            assert not result.is_error, result
            seen["listed"] = any(l["lease"] == lease for l in result.structured_content["leases"])
            result = await client.call_tool("exec", {"id": lease, "command": ["sh", "-c", "echo $((6*7)); exit 5"]})
            assert not result.is_error, result
            seen["exec"] = result.structured_content
            for _ in range(50):
                result = await client.call_tool("logs", {"id": lease})
                assert not result.is_error, result
                if result.structured_content["stdout"]:
                    break
                await asyncio.sleep(0.1)
            seen["logs"] = result.structured_content
            result = await client.call_tool("stop", {"id": lease})
            assert not result.is_error, result
            seen["stopped"] = result.structured_content["lease"]["state"]
    return seen


def main():
    kind = sys.argv[1]
    if kind == "stdio":
        agora, node, mode = sys.argv[2], sys.argv[3], sys.argv[4]
        args = ["--log", "debug", "mcp", "--node", node]
        if len(sys.argv) > 5:
            args += ["--key", sys.argv[5]]
        server = StdioServerParameters(command=agora, args=args)
    elif kind == "http":
        server, mode = sys.argv[2], sys.argv[3]
        if len(sys.argv) > 4:
            headers = {"Authorization": f"Bearer {sys.argv[4]}"}
            server = streamable_http_client(server, http_client=create_mcp_http_client(headers=headers))
    else:
        raise SystemExit(f"unknown transport {kind}")
    keyed = len(sys.argv) > (5 if kind == "stdio" else 4)
    seen = asyncio.run(session(server, mode, keyed))
    print(json.dumps(seen), flush=True)


if __name__ == "__main__":
    main()
