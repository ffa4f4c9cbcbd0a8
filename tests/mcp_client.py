"""An MCP client nobody here wrote: the official Python SDK (`mcp` on PyPI) against /mcp.

Usage: python mcp_client.py <url of /mcp> <API key> <device id> <legacy|auto>

`legacy` uses the initialize handshake; `auto` discovers (server/discover) and takes the newest
revision the server offers. Lists the tools, calls get_device (the SDK validates the structured
result against the tool's outputSchema itself), and prints one JSON report as its last line.
Run by tests/it/mcp.rs (`needs_python_mcp_…`) with the interpreter scripts/test.sh prepared.
"""

import asyncio
import json
import sys

from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def main(url: str, key: str, device_id: str, mode: str) -> dict:
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
    async with http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            tools = await client.list_tools()
            names = sorted(t.name for t in tools.tools)
            tool = next(t for t in tools.tools if t.name == "get_device")
            assert tool.output_schema is not None, "get_device has no outputSchema"
            assert tool.annotations is not None and tool.annotations.read_only_hint is True
            result = await client.call_tool("get_device", {"device_id": device_id, "details": "basic"})
            mirror = [json.loads(c.text) for c in result.content if getattr(c, "type", "") == "text"]
            assert result.structured_content in mirror, "no text block mirrors the structured result"
            info = client.server_info
            return {
                "protocol_version": client.protocol_version,
                "server": info.name if info else None,
                "tools": names,
                "result": {"is_error": result.is_error, "structured": result.structured_content},
            }


if __name__ == "__main__":
    report = asyncio.run(main(*sys.argv[1:5]))
    print(json.dumps(report))
