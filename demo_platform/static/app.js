// Demo Social front end: renders posts from the JSON API, with infinite scroll.
// Post text is untrusted: every string from the API goes into the page via textContent or
// attribute setters, never innerHTML.
(function () {
  "use strict";

  var PAGE_SIZE = 10;
  var NEAR_BOTTOM_PX = 600;
  var mode = document.body.getAttribute("data-mode");
  var feed = document.getElementById("feed");
  var statusBox = document.getElementById("status");
  var titleBox = document.getElementById("feed-title");
  var cursor = null;
  var loading = false;
  var done = false;

  function lastSegment(prefix) {
    return decodeURIComponent(location.pathname.slice(prefix.length));
  }

  function feedUrl() {
    var params = new URLSearchParams();
    var path;
    if (mode === "search") {
      var q = new URLSearchParams(location.search).get("q") || "";
      path = "/api/v1/search";
      params.set("q", q);
      titleBox.textContent = "Search: " + q;
    } else if (mode === "tag") {
      var tag = lastSegment("/tag/");
      path = "/api/v1/search";
      params.set("q", "#" + tag);
      titleBox.textContent = "#" + tag;
    } else if (mode === "account") {
      var handle = lastSegment("/@");
      path = "/api/v1/accounts/" + encodeURIComponent(handle) + "/posts";
      titleBox.textContent = "@" + handle;
    } else {
      return null;
    }
    params.set("limit", String(PAGE_SIZE));
    if (cursor) params.set("cursor", cursor);
    return path + "?" + params.toString();
  }

  function safeUrl(raw) {
    try {
      var u = new URL(raw, location.href);
      return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
    } catch (e) {
      return null;
    }
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function renderPost(post) {
    var article = el("article", "post");
    article.setAttribute("data-post-id", post.id);

    var head = el("header", "post-head");
    var account = el("span", "account");
    account.setAttribute("data-handle", post.account.handle);
    var profile = el("a", "profile");
    profile.href = "/@" + encodeURIComponent(post.account.handle);
    profile.appendChild(el("span", "display-name", post.account.display_name));
    profile.appendChild(el("span", "handle", "@" + post.account.handle));
    account.appendChild(profile);
    head.appendChild(account);

    var permalink = el("a", "permalink");
    permalink.href = "/p/" + encodeURIComponent(post.id);
    var time = el("time", null, new Date(post.created_at).toLocaleString());
    time.setAttribute("datetime", post.created_at);
    permalink.appendChild(time);
    head.appendChild(permalink);
    article.appendChild(head);

    var text = el("div", "text", post.text);
    text.setAttribute("lang", post.lang);
    article.appendChild(text);

    if (post.hashtags && post.hashtags.length) {
      var tags = el("div", "hashtags");
      post.hashtags.forEach(function (tag) {
        var a = el("a", "hashtag", "#" + tag);
        a.href = "/tag/" + encodeURIComponent(tag);
        tags.appendChild(a);
      });
      article.appendChild(tags);
    }

    if (post.media && post.media.length) {
      var box = el("div", "media-box count-" + Math.min(post.media.length, 3));
      post.media.forEach(function (m) {
        var src = safeUrl(m.url);
        if (!src) return;
        var node;
        if (m.type === "video") {
          node = el("video", "media");
          node.controls = true;
          node.muted = true;
          node.preload = "metadata";
        } else {
          node = el("img", "media");
          node.alt = "";
          node.decoding = "async";
        }
        node.src = src;
        box.appendChild(node);
      });
      article.appendChild(box);
    }
    return article;
  }

  function nearBottom() {
    var doc = document.documentElement;
    return window.innerHeight + window.scrollY >= doc.scrollHeight - NEAR_BOTTOM_PX;
  }

  function finish() {
    done = true;
    if (!document.getElementById("end-of-feed")) {
      var end = el("div", null, feed.children.length ? "End of results" : "No posts found");
      end.id = "end-of-feed";
      feed.parentNode.insertBefore(end, statusBox);
    }
  }

  function showError(message) {
    statusBox.textContent = message;
    statusBox.className = "error";
  }

  function loadMore() {
    if (loading || done) return;
    var url = feedUrl();
    if (!url) return;
    loading = true;
    statusBox.textContent = "Loading…";
    statusBox.className = "";
    fetch(url, { headers: { Accept: "application/json" } })
      .then(function (r) {
        return r.json().then(function (body) {
          if (!r.ok) throw new Error(body && body.error ? body.error : "HTTP " + r.status);
          return body;
        });
      })
      .then(function (body) {
        body.posts.forEach(function (p) { feed.appendChild(renderPost(p)); });
        cursor = body.next_cursor;
        statusBox.textContent = "";
        loading = false;
        if (!cursor) {
          finish();
        } else if (nearBottom()) {
          loadMore();  // the page is still short: fill it without waiting for a scroll
        }
      })
      .catch(function (err) {
        loading = false;
        showError("Could not load posts: " + err.message);
      });
  }

  function loadSinglePost() {
    var id = lastSegment("/p/");
    fetch("/api/v1/posts/" + encodeURIComponent(id), { headers: { Accept: "application/json" } })
      .then(function (r) {
        return r.json().then(function (body) {
          if (!r.ok) throw new Error(body && body.error ? body.error : "HTTP " + r.status);
          return body;
        });
      })
      .then(function (post) {
        feed.appendChild(renderPost(post));
        document.title = "@" + post.account.handle + " · " + post.id + " · Demo Social";
      })
      .catch(function (err) { showError("Could not load the post: " + err.message); });
  }

  if (mode === "post") {
    loadSinglePost();
  } else {
    window.addEventListener("scroll", function () { if (nearBottom()) loadMore(); }, { passive: true });
    window.addEventListener("resize", function () { if (nearBottom()) loadMore(); });
    loadMore();
  }
})();
