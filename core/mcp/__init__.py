"""The MCP server: claimroom's tools and resources for any MCP client (``claimroom serve``).

serve.serve_http / serve.serve_stdio   the command's entry points
http.build_app(store, host=, port=, root=, extra_routes=)   the Streamable HTTP ASGI app
stdio.serve_stdio(store, identity, root=)                   one client on stdin/stdout
"""
