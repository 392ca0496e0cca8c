// Key conformance scenarios through the official `openai` Node.js package: streaming text,
// streamed tool calls, the usage chunk, and an error, for every provider named on the command
// line. Prints one JSON object of results; the Python test asserts on it.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.SWITCHYARD_BASE_URL, apiKey: process.env.SWITCHYARD_API_KEY, maxRetries: 0 });
const weather = {
  type: "function",
  function: {
    name: "get_weather",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};

async function scenarios(model, errorModel) {
  const out = {};
  let text = "";
  let finish = null;
  let usage = null;
  let lastChoices = -1;
  const stream = await client.chat.completions.create({
    model, messages: [{ role: "user", content: "hello node" }], stream: true, stream_options: { include_usage: true },
  });
  for await (const chunk of stream) {
    lastChoices = chunk.choices.length;
    if (chunk.usage) usage = chunk.usage;
    for (const choice of chunk.choices) {
      text += choice.delta.content ?? "";
      finish = choice.finish_reason ?? finish;
    }
  }
  out.text = text;
  out.finish = finish;
  out.usage = usage;
  out.last_chunk_choices = lastChoices;

  const calls = {};
  let toolFinish = null;
  const toolStream = await client.chat.completions.create({
    model, messages: [{ role: "user", content: "weather?" }], tools: [weather], stream: true,
  });
  for await (const chunk of toolStream) {
    for (const choice of chunk.choices) {
      toolFinish = choice.finish_reason ?? toolFinish;
      for (const tc of choice.delta.tool_calls ?? []) {
        const slot = (calls[tc.index] ??= { id: "", name: "", arguments: "" });
        slot.id += tc.id ?? "";
        slot.name += tc.function?.name ?? "";
        slot.arguments += tc.function?.arguments ?? "";
      }
    }
  }
  out.tool_calls = calls;
  out.tool_finish = toolFinish;

  try {
    await client.chat.completions.create({ model: errorModel, messages: [{ role: "user", content: "x" }] });
    out.error = null;
  } catch (err) {
    out.error = { name: err.constructor.name, status: err.status, retry_after: err.headers?.get?.("retry-after") ?? null };
  }
  return out;
}

const results = {};
for (const arg of process.argv.slice(2)) {
  const [provider, model, errorModel] = arg.split("=");
  results[provider] = await scenarios(model, errorModel);
}
console.log(JSON.stringify(results));
