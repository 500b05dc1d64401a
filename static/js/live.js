/* A websocket that reconnects with backoff and dispatches JSON messages by their `type`.
 *
 *   var live = StepwiseLive.connect("/ws/runs/1/", {
 *     open: function () {}, close: function (event) {}, step: function (msg) {}, ...
 *   });
 *   live.close();
 */
(function (global) {
  "use strict";

  var MIN_DELAY_MS = 500;
  var MAX_DELAY_MS = 30000;

  function socketUrl(path) {
    var scheme = global.location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + global.location.host + path;
  }

  function connect(path, handlers) {
    var failures = 0;
    var socket = null;
    var timer = null;
    var stopped = false;

    function call(name, arg) {
      var handler = handlers[name];
      if (typeof handler !== "function") return;
      try {
        handler(arg);
      } catch (err) {
        // One bad message must not break the stream.
        if (global.console) global.console.error("live handler " + name + " failed", err);
      }
    }

    function schedule() {
      if (stopped || timer !== null) return;
      var base = Math.min(MAX_DELAY_MS, MIN_DELAY_MS * Math.pow(2, failures));
      var delay = base / 2 + Math.random() * base / 2;  // jitter: reloaded pages do not reconnect in step
      failures += 1;
      call("retry", delay);
      timer = global.setTimeout(function () { timer = null; open(); }, delay);
    }

    function open() {
      if (stopped) return;
      try {
        socket = new global.WebSocket(socketUrl(path));
      } catch (err) {
        schedule();
        return;
      }
      socket.onopen = function () {
        failures = 0;
        call("open");
      };
      socket.onmessage = function (event) {
        var message;
        try {
          message = JSON.parse(event.data);
        } catch (err) {
          return;
        }
        if (message && typeof message.type === "string") call(message.type, message);
      };
      socket.onclose = function (event) {
        socket = null;
        call("close", event);
        schedule();
      };
    }

    open();
    return {
      close: function () {
        stopped = true;
        if (timer !== null) global.clearTimeout(timer);
        if (socket) socket.close();
      },
      send: function (message) {
        if (socket && socket.readyState === global.WebSocket.OPEN) socket.send(JSON.stringify(message));
      }
    };
  }

  global.StepwiseLive = { connect: connect };
})(window);
