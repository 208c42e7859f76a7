// harden's dashboard: the copy buttons, the only script on the admin pages. A button
// data-copy="#id" copies that element's text, or the absolute form of its data-link.
document.addEventListener('click', (event) => {
  const button = event.target.closest('button[data-copy]');
  if (!button) return;
  const target = document.querySelector(button.dataset.copy);
  if (!target) return;
  const text = target.dataset.link ? new URL(target.dataset.link, location.origin).href : target.textContent;
  navigator.clipboard.writeText(text).then(
    () => { button.textContent = 'Copied'; },
    () => { button.textContent = 'Select it and copy'; },
  );
});
