// Reload every minute while the page is shown; the page is whole without this script.
setInterval(function () { if (!document.hidden) { window.location.reload(); } }, 60000);
