// The console's only script, progressive: a page with an "auto-refresh" checkbox (a wave
// while it sends) reloads every 5 s while the box stays checked. Without JavaScript the box
// stays hidden and the page is reloaded by hand.
(function () {
  var box = document.getElementById('auto-refresh');
  if (!box) return;
  box.closest('p').hidden = false;
  setInterval(function () { if (box.checked) location.reload(); }, 5000);
})();
