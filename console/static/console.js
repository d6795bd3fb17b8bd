// Local time on hover and focus: every <time datetime> gets a title in the browser's own time zone.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const element of document.querySelectorAll("time[datetime]")) {
    const when = new Date(element.getAttribute("datetime"));
    if (!Number.isNaN(when.getTime())) {
      element.title = "Local time: " + when.toLocaleString();
    }
  }
});
