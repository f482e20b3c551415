// Export of the current view through the export route: the body is read as it streams (with progress),
// then handed to the browser as a download. The key travels in the header as for every call, so the
// download cannot be a plain link (that would need the key in the URL).

import { call } from "./api.js";

export async function exportEvents(format, params, { signal, onProgress }) {
  const response = await call("/v1/audit-log/export", { ...params, format }, { signal });
  const reader = response.body.getReader();
  const chunks = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.length;
    onProgress(size);
  }
  const blob = new Blob(chunks, { type: response.headers.get("Content-Type") || "application/octet-stream" });
  const anchor = document.createElement("a");
  anchor.href = URL.createObjectURL(blob); // a blob: URL made here, never text from an event
  anchor.download = `audit-log.${format}`;
  document.body.append(anchor);
  anchor.click();
  anchor.remove();
  setTimeout(() => URL.revokeObjectURL(anchor.href), 60000); // the download has started long before
  return { size };
}
