// Package browser drives a headless Chromium from Go tests over the Chrome
// DevTools Protocol (a WebSocket per page, JSON messages): open a page,
// evaluate JavaScript, type, reload. It is a test harness for the chat
// page (ui) and holds only what those tests need. Chromium runs with a new
// temporary profile and no network besides what the page loads.
//
// A Browser and its Pages are safe for concurrent use; Close ends the
// process and its goroutines.
package browser
