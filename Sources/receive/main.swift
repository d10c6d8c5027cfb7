import FunctionRuntime
await FunctionRuntime.run("receive") { _, _ in HTTPFunction { _, _ in .text(501, "not yet") } }
